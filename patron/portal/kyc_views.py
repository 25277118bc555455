"""Portal: real-name verification for the member (KYC-1..5).

One page: the current state (verified badge, waiting for review, rejected with the
reviewer's reason) and, when a submission is possible, the form with the separate consent
to sensitive personal information. The same ``submit_kyc`` service as the API decides;
its refusals are placed next to the fields they concern.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from patron.core.audit import Actor
from patron.core.exceptions import PatronError
from patron.members import selectors_kyc
from patron.members.models import ConsentDocument, KycSubmission, Member
from patron.members.services import kyc as kyc_services
from patron.portal.forms import PortalForm
from patron.portal.views import document_title, member_required

ACCEPT_IMAGES = "image/jpeg,image/png"


class KycForm(PortalForm):
    """What the member types and uploads. Only presence is checked here; the pre-check in
    ``submit_kyc`` judges the values, exactly as for the API."""

    name = forms.CharField(
        label=_("Name on the ID card"),
        max_length=kyc_services.NAME_MAX,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    id_number = forms.CharField(
        label=_("Resident ID number"),
        max_length=32,
        help_text=_("18 characters, as printed on the card."),
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}
        ),
    )
    front = forms.FileField(
        label=_("Photo of the front (with your portrait)"),
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPT_IMAGES}),
    )
    back = forms.FileField(
        label=_("Photo of the back (with the issuing authority)"),
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPT_IMAGES}),
    )
    accept_sensitive = forms.BooleanField(label="", required=True)
    # The version the member was shown: if a new one is published meanwhile, the service
    # refuses, and the member sees and accepts the new text.
    sensitive_version = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(
        self, *args: Any, document: ConsentDocument | None, consented: bool, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        limit_mb = round(settings.PATRON_KYC_MAX_IMAGE_BYTES / 1024 / 1024, 1)
        help_text = _("JPEG or PNG, at most %(mb)s MB; all four corners visible, no glare.") % {
            "mb": limit_mb
        }
        self.fields["front"].help_text = help_text
        self.fields["back"].help_text = help_text
        if consented or document is None:
            # Already on record (or nothing to consent to: the service says so): no box.
            del self.fields["accept_sensitive"]
            del self.fields["sensitive_version"]
        else:
            self.fields["accept_sensitive"].label = _(
                "I consent to the processing of my ID number and ID card photos for "
                "real-name verification."
            )
            self.fields["accept_sensitive"].help_text = _(
                "They are sensitive personal information; how we protect and keep them is "
                "described in “%(title)s” (version %(version)s)."
            ) % {"title": document_title(document), "version": document.version}
            self.fields["accept_sensitive"].error_messages["required"] = _(
                "Real-name verification needs this consent."
            )
            self.fields["sensitive_version"].initial = document.version

    def accept_sensitive_value(self) -> str | None:
        if "accept_sensitive" not in self.fields or not self.cleaned_data.get("accept_sensitive"):
            return None
        return f"sensitive@{self.cleaned_data.get('sensitive_version') or ''}"


def _read(upload: Any) -> bytes | None:
    """The upload's bytes, never more than one past the limit (enough to refuse it)."""
    if upload is None:
        return None
    return upload.read(int(settings.PATRON_KYC_MAX_IMAGE_BYTES) + 1)


@never_cache
@sensitive_post_parameters("name", "id_number")
@require_http_methods(["GET", "POST"])
@member_required
def kyc(request: HttpRequest) -> HttpResponse:
    member: Member = request.member  # type: ignore[attr-defined]
    document = selectors_kyc.current_sensitive_document()
    consented = document is not None and selectors_kyc.has_sensitive_consent(member, document)
    status = selectors_kyc.kyc_status(member)
    can_submit = (
        member.status == Member.Status.ACTIVE
        and not status.verified
        and status.status
        not in (KycSubmission.Status.PENDING_REVIEW, KycSubmission.Status.APPROVED)
        and document is not None
    )
    form = KycForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
        document=document,
        consented=consented,
    )
    http_status = 200
    if request.method == "POST":
        if can_submit and form.is_valid():
            data = form.cleaned_data
            try:
                kyc_services.submit_kyc(
                    member=member,
                    name=data["name"],
                    id_number=data["id_number"],
                    front=_read(data["front"]),
                    back=_read(data["back"]),
                    actor=Actor.user(request.user),
                    accept_sensitive=form.accept_sensitive_value(),
                    channel="portal",
                )
            except PatronError as exc:
                form.apply_service_errors(exc)
                http_status = exc.status
            else:
                messages.success(
                    request,
                    gettext(
                        "Thank you. Your documents are waiting for review; we will tell you "
                        "the result."
                    ),
                )
                return redirect("portal:kyc")
        elif not can_submit:
            http_status = 409
        else:
            http_status = 422
    return render(
        request,
        "portal/kyc.html",
        {
            "member": member,
            "kyc": status,
            "form": form,
            "can_submit": can_submit,
            "document": document,
            "document_title": document_title(document) if document else "",
            "consented": consented,
        },
        status=http_status,
    )
