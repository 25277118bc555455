"""Console pages for platform webhooks (NOTE-2): list, create (secret shown once),
deactivate, send a test event, and each endpoint's recent deliveries.

Every page needs ``notify.manage_webhooks``. Changes go through ``patron.notify.webhooks``,
which audits them. The page that shows a new secret answers the POST directly (no
redirect) and forbids caching, like the API key page.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from patron.console.views import _form_errors, staff_page
from patron.core import audit
from patron.core.exceptions import PatronError
from patron.notify import webhooks
from patron.notify.models import WebhookEndpoint

PERMISSION = "notify.manage_webhooks"


class WebhookForm(forms.Form):
    """Shapes input only; ``webhooks.create_endpoint`` validates and refuses."""

    name = forms.CharField(label=gettext_lazy("Name"), max_length=webhooks.NAME_MAX)
    url = forms.CharField(
        label=gettext_lazy("URL"),
        max_length=webhooks.URL_MAX,
        help_text=gettext_lazy("An http:// or https:// address of the platform's receiver."),
    )
    events = forms.MultipleChoiceField(
        label=gettext_lazy("Events"),
        choices=[
            (webhooks.ALL_EVENTS, gettext_lazy("All events")),
            *[(e, e) for e in webhooks.EVENTS],
        ],
        widget=forms.CheckboxSelectMultiple,
    )


@never_cache
@staff_page(PERMISSION)
def webhooks_page(request: HttpRequest) -> HttpResponse:
    created = None
    status = 200
    form = WebhookForm()
    if request.method == "POST":
        form = WebhookForm(request.POST)
        if form.is_valid():
            try:
                created = webhooks.create_endpoint(
                    name=form.cleaned_data["name"],
                    url=form.cleaned_data["url"],
                    events=form.cleaned_data["events"],
                    actor=audit.Actor.user(request.user),
                    created_by=request.user,
                )
            except PatronError as error:
                _form_errors(form, error)
                status = error.status
            else:
                form = WebhookForm()
        else:
            status = 422
    elif request.method != "GET":
        return HttpResponse(status=405)
    response = render(
        request,
        "console/webhooks.html",
        {"endpoints": webhooks.endpoints(), "form": form, "created": created},
        status=status,
    )
    if created is not None:
        response["Cache-Control"] = "no-store"
    return response


def _detail(request: HttpRequest, endpoint: WebhookEndpoint, status: int = 200) -> HttpResponse:
    return render(
        request,
        "console/webhooks_detail.html",
        {"endpoint": endpoint, "deliveries": webhooks.recent_deliveries(endpoint)},
        status=status,
    )


@require_GET
@staff_page(PERMISSION)
def webhook_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail(request, get_object_or_404(webhooks.endpoints(), pk=pk))


@require_POST
@staff_page(PERMISSION)
def webhook_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(webhooks.endpoints(), pk=pk)
    webhooks.deactivate_endpoint(endpoint=endpoint, actor=audit.Actor.user(request.user))
    messages.success(request, _("Deactivated the endpoint %(name)s.") % {"name": endpoint.name})
    return redirect("console:webhook", pk=endpoint.pk)


@require_POST
@staff_page(PERMISSION)
def webhook_test(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(webhooks.endpoints(), pk=pk)
    try:
        message = webhooks.send_test_event(endpoint=endpoint, actor=audit.Actor.user(request.user))
    except PatronError as error:
        messages.error(request, error.message)
        return _detail(request, endpoint, status=error.status)
    messages.success(request, _("Test event queued as delivery %(id)s.") % {"id": message.pk})
    return redirect("console:webhook", pk=endpoint.pk)
