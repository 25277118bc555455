"""Staff console pages beyond the admin: members, consent documents, API keys, audit trail.

Every page is for active staff only and checks its own permissions (``staff_page``); an
anonymous visitor is sent to sign in, a signed-in user without the permission gets 403.
Views stay thin: they read through ``patron.console.selectors`` and change things through
one service each (which audits). Staff 2FA is enforced by middleware, not here.

Pages that show a secret once (a new API key, revealed personal data) answer directly to
the POST, never through a redirect, and forbid caching, so the secret is not kept in
browser history or any cache.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from patron.api import keys as api_keys
from patron.api.models import ApiKey
from patron.console import selectors
from patron.console.forms import (
    ApiKeyForm,
    AuditFilterForm,
    DocumentForm,
    MemberSearchForm,
    RevealForm,
)
from patron.core import audit
from patron.core.exceptions import PatronError
from patron.members.services.documents import publish_document_version
from patron.members.services.reveal import reveal_personal_data

PAGE_SIZE = 25


def staff_page(*perms: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Active staff holding every permission in ``perms``; anonymous users sign in first."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not (user.is_active and user.is_staff and user.has_perms(perms)):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _form_errors(form: Any, error: PatronError) -> None:
    """Put a service refusal onto the form: field errors where the field exists."""
    placed = False
    for field_error in error.errors:
        if field_error.field in form.fields:
            form.add_error(field_error.field, str(field_error.message))
            placed = True
    if not placed:
        form.add_error(None, str(error.message))


def _page(request: HttpRequest, items: Any) -> Any:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# --- Home ------------------------------------------------------------------------------


@require_GET
@staff_page()
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "console/home.html")


# --- Members ---------------------------------------------------------------------------


@require_GET
@staff_page("members.view_member")
def members(request: HttpRequest) -> HttpResponse:
    form = MemberSearchForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    found = selectors.search_members(
        q=filters.get("q", ""), status=filters.get("status", ""), kind=filters.get("kind", "")
    )
    page = _page(request, found)
    rows = [selectors.MaskedMember.of(member) for member in page.object_list]
    return render(
        request,
        "console/members.html",
        {"form": form, "page": page, "rows": rows, "query": _query_without_page(request)},
    )


def _member_or_404(number: str) -> Any:
    member = selectors.member_detail(number)
    if member is None:
        raise Http404
    return member


def _member_context(request: HttpRequest, member: Any) -> dict[str, Any]:
    return {
        "member": member,
        "masked": selectors.MaskedMember.of(member),
        "status_changes": member.status_changes.all()[:20],
        "consents": member.consents.select_related("document")[:20],
        "can_reveal": request.user.has_perm("members.reveal_personal_data"),
    }


@require_GET
@staff_page("members.view_member")
def member_detail(request: HttpRequest, number: str) -> HttpResponse:
    member = _member_or_404(number)
    context = _member_context(request, member)
    context["reveal_form"] = RevealForm()
    return render(request, "console/member_detail.html", context)


@require_POST
@never_cache
@sensitive_post_parameters("reason")
@staff_page("members.view_member", "members.reveal_personal_data")
def member_reveal(request: HttpRequest, number: str) -> HttpResponse:
    """Show the unmasked data once, in the answer to the POST (PRIV-3)."""
    member = _member_or_404(number)
    form = RevealForm(request.POST)
    context = _member_context(request, member)
    status = 200
    if form.is_valid():
        try:
            context["revealed"] = reveal_personal_data(
                member=member,
                staff_user=request.user,
                reason=form.cleaned_data["reason"],
                category=form.cleaned_data["category"],
            )
        except PatronError as error:
            _form_errors(form, error)
            status = error.status
    else:
        status = 422
    context["reveal_form"] = form
    response = render(request, "console/member_detail.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


# --- Consent documents -----------------------------------------------------------------


@require_GET
@staff_page("members.view_consentdocument")
def documents(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "console/documents.html",
        {
            "documents": selectors.documents(),
            "can_add": request.user.has_perm("members.add_consentdocument"),
        },
    )


@staff_page("members.view_consentdocument", "members.add_consentdocument")
def document_new(request: HttpRequest) -> HttpResponse:
    """Publish a new version; members must accept a new required version at next sign-in."""
    if request.method == "POST":
        form = DocumentForm(request.POST)
        if form.is_valid():
            try:
                document = publish_document_version(
                    **form.cleaned_data, actor=audit.Actor.user(request.user)
                )
            except PatronError as error:
                _form_errors(form, error)
            else:
                messages.success(
                    request,
                    _("Published %(kind)s version %(version)s.")
                    % {"kind": document.get_kind_display(), "version": document.version},
                )
                return redirect("console:documents")
        return render(request, "console/document_form.html", {"form": form}, status=422)
    if request.method != "GET":
        return HttpResponse(status=405)
    initial: dict[str, Any] = {"required": True}
    kind = request.GET.get("kind", "")
    current = next(
        (doc for doc, is_current in selectors.documents() if is_current and doc.kind == kind), None
    )
    if current is not None:
        # Start from the current text: most new versions change a paragraph, not all of it.
        initial.update(
            kind=current.kind,
            title=current.title,
            body=current.body,
            title_en=current.title_en,
            body_en=current.body_en,
            required=current.required,
        )
    return render(request, "console/document_form.html", {"form": DocumentForm(initial=initial)})


# --- API keys --------------------------------------------------------------------------


@staff_page("api.view_apikey")
def keys(request: HttpRequest) -> HttpResponse:
    can_manage = request.user.has_perm("api.manage_api_keys")
    created = None
    status = 200
    form = ApiKeyForm()
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            try:
                created = api_keys.create_api_key(
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    actor=audit.Actor.user(request.user),
                    created_by=request.user,
                )
            except PatronError as error:
                _form_errors(form, error)
                status = error.status
            else:
                form = ApiKeyForm()
        else:
            status = 422
    elif request.method != "GET":
        return HttpResponse(status=405)
    response = render(
        request,
        "console/api_keys.html",
        {
            "keys": selectors.api_keys(),
            "form": form,
            "created": created,
            "can_manage": can_manage,
            "scopes": api_keys.SCOPES,
        },
        status=status,
    )
    if created is not None:
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@staff_page("api.view_apikey", "api.manage_api_keys")
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id)
    api_keys.revoke_api_key(key=key, actor=audit.Actor.user(request.user))
    messages.success(request, _("Revoked the key %(prefix)s.") % {"prefix": key.prefix})
    return redirect("console:api_keys")


# --- Audit trail -----------------------------------------------------------------------


@require_GET
@staff_page("core.view_auditevent")
def audit_trail(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    events = selectors.audit_events(
        action=filters.get("action", ""),
        subject_type=filters.get("subject_type", ""),
        subject_id=filters.get("subject_id", ""),
    )
    return render(
        request,
        "console/audit.html",
        {"form": form, "page": _page(request, events), "query": _query_without_page(request)},
    )


@require_POST
@staff_page("core.view_auditevent")
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Walk the whole hash chain now and show the result (read-only, nothing recorded)."""
    result = audit.verify()
    form = AuditFilterForm()
    events = selectors.audit_events()
    return render(
        request,
        "console/audit.html",
        {"form": form, "page": _page(request, events), "query": "", "verify": result},
        status=200,
    )
