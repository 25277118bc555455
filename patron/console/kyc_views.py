"""Console: the real-name verification review queue (KYC-3) and ID photos (PRIV-3).

Permissions:
- ``members.view_kycsubmission`` (or ``members.review_kyc``): the queue, a submission's
  masked summary, a member's KYC history.
- ``members.review_kyc``: the ID photos, the unmasked submitted name and ID number, and
  the approve / reject decisions. Every photo view and every unmasking is audited
  (``member.personal_data_revealed``) before the data is sent; photos are served with
  ``no-store`` so no browser or proxy keeps a copy.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from patron.console.views import staff_page
from patron.core.exceptions import PatronError
from patron.core.masking import mask_id_number, mask_name
from patron.members import selectors, selectors_kyc
from patron.members.models import KycSubmission
from patron.members.services import kyc as kyc_services

VIEW = "members.view_kycsubmission"
REVIEW = kyc_services.REVIEW_PERMISSION
PAGE_SIZE = 50


def _staff(view: Any) -> Any:
    # Signed-in active staff (2FA is enforced by the console middleware); the finer
    # any-of permission checks follow in each view.
    return staff_page()(never_cache(view))


def _require(request: HttpRequest, *any_of: str) -> None:
    if not any(request.user.has_perm(perm) for perm in any_of):
        raise PermissionDenied


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        label=_("Decision"),
        choices=[("approve", _("Approve")), ("reject", _("Reject"))],
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=kyc_services.REASON_MAX,
        help_text=_("Required to reject: the member is told this reason."),
        widget=forms.Textarea(attrs={"rows": 3}),
    )


def _submission_or_404(pk: int) -> KycSubmission:
    submission = selectors_kyc.submission_summary(pk)
    if submission is None:
        raise Http404
    return submission


def _detail_context(
    request: HttpRequest, submission: KycSubmission, *, revealed: bool = False
) -> dict[str, Any]:
    can_review = request.user.has_perm(REVIEW)
    return {
        "submission": submission,
        "member": submission.member,
        "masked_name": mask_name(submission.name),
        "masked_id_number": mask_id_number(submission.id_number),
        "revealed": revealed,
        "can_review": can_review,
        "decidable": can_review and submission.status == KycSubmission.Status.PENDING_REVIEW,
        "same_id_elsewhere": selectors_kyc.other_members_with_same_id_number(submission),
        "provider": submission.provider_result or None,
    }


@_staff
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    """Pending submissions, oldest first, masked."""
    _require(request, VIEW, REVIEW)
    page = Paginator(selectors_kyc.review_queue(), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "submission": submission,
            "masked_name": mask_name(submission.name),
            "masked_id_number": mask_id_number(submission.id_number),
        }
        for submission in page.object_list
    ]
    return render(request, "console/kyc_queue.html", {"page": page, "rows": rows})


@_staff
@require_GET
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    _require(request, VIEW, REVIEW)
    submission = _submission_or_404(pk)
    context = _detail_context(request, submission)
    context["form"] = DecisionForm()
    return render(request, "console/kyc_detail.html", context)


@_staff
@require_POST
def reveal(request: HttpRequest, pk: int) -> HttpResponse:
    """Show the unmasked submitted name and ID number, once, audited."""
    _require(request, REVIEW)
    submission = _submission_or_404(pk)
    kyc_services.record_reveal(submission=submission, viewer=request.user, part="data")
    context = _detail_context(request, submission, revealed=True)
    context["form"] = DecisionForm()
    return render(request, "console/kyc_detail.html", context)


@_staff
@require_GET
def image(request: HttpRequest, pk: int, side: str) -> HttpResponse:
    """One ID photo, decrypted for a reviewer; audited before a byte is sent."""
    if side not in ("front", "back"):
        raise Http404
    _require(request, REVIEW)
    submission = selectors_kyc.submission_for_review(pk)
    if submission is None:
        raise Http404
    kyc_services.record_reveal(submission=submission, viewer=request.user, part=side)
    data = submission.front_image if side == "front" else submission.back_image
    content_type = (
        submission.front_content_type if side == "front" else submission.back_content_type
    )
    response = HttpResponse(data, content_type=content_type)
    response["Cache-Control"] = "no-store, private, max-age=0"
    response["Pragma"] = "no-cache"
    response["Content-Disposition"] = "inline"
    # An image served from our origin must never be able to run anything.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Referrer-Policy"] = "no-referrer"
    return response


@_staff
@require_http_methods(["POST"])
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    _require(request, REVIEW)
    submission = _submission_or_404(pk)
    form = DecisionForm(request.POST)
    if form.is_valid():
        reason = form.cleaned_data["reason"]
        try:
            if form.cleaned_data["decision"] == "approve":
                kyc_services.approve_kyc(
                    submission=submission, reviewer=request.user, reason=reason
                )
                messages.success(request, gettext("Approved: the member is now verified."))
            else:
                kyc_services.reject_kyc(submission=submission, reviewer=request.user, reason=reason)
                messages.success(request, gettext("Rejected: the member has been told why."))
        except PatronError as exc:
            status = exc.status
            for error in exc.errors:
                target = error.field if error.field in form.fields else None
                form.add_error(target, str(error.message))
            if not exc.errors:
                form.add_error(None, str(exc.message))
        else:
            return redirect("console:kyc_queue")
    else:
        status = 422
    submission = _submission_or_404(pk)  # re-read: someone else may have decided meanwhile
    context = _detail_context(request, submission)
    context["form"] = form
    return render(request, "console/kyc_detail.html", context, status=status)


@_staff
@require_GET
def member_history(request: HttpRequest, number: str) -> HttpResponse:
    """Every submission of one member, newest first, masked."""
    _require(request, VIEW, REVIEW)
    member = selectors.member_by_number(number)
    if member is None:
        raise Http404
    rows = [
        {
            "submission": submission,
            "masked_name": mask_name(submission.name),
            "masked_id_number": mask_id_number(submission.id_number),
        }
        for submission in selectors_kyc.member_submissions(member)
    ]
    return render(request, "console/kyc_history.html", {"member": member, "rows": rows})
