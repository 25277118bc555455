"""The console's KYC review (KYC-3) and photo reveals (PRIV-3), through the real views."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client

from patron.core.audit import Actor
from patron.core.models import AuditEvent
from patron.members.models import KycSubmission, Member
from patron.members.services.kyc import record_provider_result, reject_kyc, submit_kyc
from patron.members.tests.kyc_factories import (
    ADULT_ID,
    decision_state,
    image_bytes,
    make_member,
    make_reviewer,
    make_staff,
    publish_sensitive,
)
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _sensitive():
    publish_sensitive("1.0")


def submit(member=None, name="王小明"):
    member = member or make_member(name=name)
    return submit_kyc(
        member=member,
        name=name,
        id_number=ADULT_ID,
        front=image_bytes("JPEG"),
        back=image_bytes("PNG"),
        actor=Actor.user(member.user),
        accept_sensitive="sensitive@1.0",
    )


def signed_in(user) -> Client:
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def csrf_post(client: Client, path: str, data: dict):
    """A POST carrying the CSRF token the page's form would carry."""
    client.get("/console/kyc/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    return client.post(path, {**data, "csrfmiddlewaretoken": token})


def reveals() -> list[dict]:
    return list(
        AuditEvent.objects.filter(action="member.personal_data_revealed").values_list(
            "details", flat=True
        )
    )


def test_kyc_3_queue_lists_pending_oldest_first_masked():
    with time_machine.travel(NOW, tick=False):
        later = submit(name="李雷")
    with time_machine.travel(NOW - dt.timedelta(hours=1), tick=False):
        earlier = submit(name="韩梅梅")
    record_provider_result(submission_ref=later.pk, result="no_match", reference="p-9")
    client = signed_in(make_staff(permissions=("members.view_kycsubmission",)))

    response = client.get("/console/kyc/")

    assert response.status_code == 200
    html = response.content.decode()
    assert html.index(f"/console/kyc/{earlier.pk}/") < html.index(f"/console/kyc/{later.pk}/")
    assert "韩**" in html and "李*" in html
    assert "韩梅梅" not in html and ADULT_ID not in html
    assert "No match" in html
    assert reveals() == []


def test_kyc_3_detail_without_review_permission_shows_no_photos_or_forms():
    submission = submit()
    client = signed_in(make_staff(permissions=("members.view_kycsubmission",)))
    html = client.get(f"/console/kyc/{submission.pk}/").content.decode()
    assert "王**" in html
    assert "/image/" not in html and "/decide/" not in html and "/reveal/" not in html


def test_kyc_3_console_needs_a_kyc_permission():
    submission = submit()
    client = signed_in(make_staff(permissions=("members.view_member",)))
    for path in (
        "/console/kyc/",
        f"/console/kyc/{submission.pk}/",
        f"/console/kyc/member/{submission.member.number}/",
    ):
        assert client.get(path).status_code == 403, path
    member_client = signed_in(make_member().user)
    assert member_client.get("/console/kyc/").status_code in (302, 403)
    anonymous = Client().get("/console/kyc/")
    assert anonymous.status_code == 302


def test_priv_3_photo_is_served_no_store_and_audited():
    submission = submit()
    reviewer = make_reviewer()
    client = signed_in(reviewer)

    response = client.get(f"/console/kyc/{submission.pk}/image/front/")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert "no-store" in response["Cache-Control"]
    assert response["X-Content-Type-Options"] == "nosniff"
    stored = KycSubmission.objects.get(pk=submission.pk)
    assert response.content == stored.front_image
    assert reveals() == [
        {
            "member_id": submission.member_id,
            "staff_user_id": reviewer.pk,
            "category": "kyc_review",
            "kyc_submission_id": submission.pk,
            "fields": ["front_image"],
        }
    ]
    back = client.get(f"/console/kyc/{submission.pk}/image/back/")
    assert (back.status_code, back["Content-Type"]) == (200, "image/png")
    assert len(reveals()) == 2


def test_priv_3_photo_needs_the_review_permission_and_nothing_is_recorded():
    submission = submit()
    client = signed_in(make_staff(permissions=("members.view_kycsubmission",)))
    before = AuditEvent.objects.count()
    response = client.get(f"/console/kyc/{submission.pk}/image/front/")
    assert response.status_code == 403
    assert response.content != KycSubmission.objects.get(pk=submission.pk).front_image
    assert AuditEvent.objects.count() == before
    assert client.get(f"/console/kyc/{submission.pk}/image/side/").status_code == 404


def test_priv_3_reveal_of_submitted_data_is_audited():
    submission = submit()
    reviewer = make_reviewer()
    client = signed_in(reviewer)
    response = csrf_post(client, f"/console/kyc/{submission.pk}/reveal/", {})
    html = response.content.decode()
    assert response.status_code == 200
    assert "王小明" in html and ADULT_ID in html
    assert (
        response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]
    )
    assert [r["fields"] for r in reveals()] == [["name", "id_number"]]


def test_kyc_3_reviewer_approves_from_the_console():
    submission = submit()
    reviewer = make_reviewer()
    client = signed_in(reviewer)
    response = csrf_post(
        client, f"/console/kyc/{submission.pk}/decide/", {"decision": "approve", "reason": ""}
    )
    assert response.status_code == 302
    assert response["Location"] == "/console/kyc/"
    fresh = KycSubmission.objects.get(pk=submission.pk)
    assert (fresh.status, fresh.reviewed_by_id) == ("approved", reviewer.pk)
    assert Member.objects.get(pk=submission.member_id).kyc_verified_at is not None


def test_kyc_3_reject_without_reason_is_refused_and_changes_nothing():
    submission = submit()
    client = signed_in(make_reviewer())
    before = decision_state(submission)
    response = csrf_post(
        client, f"/console/kyc/{submission.pk}/decide/", {"decision": "reject", "reason": " "}
    )
    assert response.status_code == 422
    assert "Give the member a reason." in response.content.decode()
    assert decision_state(submission) == before


def test_kyc_3_decision_without_csrf_token_is_refused():
    submission = submit()
    client = signed_in(make_reviewer())
    before = decision_state(submission)
    response = client.post(f"/console/kyc/{submission.pk}/decide/", {"decision": "approve"})
    assert response.status_code == 403
    assert decision_state(submission) == before


def test_kyc_3_reviewer_without_permission_cannot_decide_in_the_console():
    submission = submit()
    client = signed_in(make_staff(permissions=("members.view_kycsubmission",)))
    before = decision_state(submission)
    response = csrf_post(
        client, f"/console/kyc/{submission.pk}/decide/", {"decision": "approve", "reason": ""}
    )
    assert response.status_code == 403
    assert decision_state(submission) == before


def test_kyc_3_deciding_twice_in_the_console_is_refused():
    submission = submit()
    reject_kyc(submission=submission, reviewer=make_reviewer(), reason="blurred")
    client = signed_in(make_reviewer())
    before = decision_state(submission)
    response = csrf_post(
        client, f"/console/kyc/{submission.pk}/decide/", {"decision": "approve", "reason": ""}
    )
    assert response.status_code == 409
    assert decision_state(submission) == before
    assert OutboxMessage.objects.filter(template="kyc_approved").count() == 0


def test_kyc_3_member_history_lists_every_submission():
    member = make_member()
    first = submit(member)
    reject_kyc(submission=first, reviewer=make_reviewer(), reason="Photo too dark")
    second = submit(Member.objects.get(pk=member.pk))
    client = signed_in(make_staff(permissions=("members.view_kycsubmission",)))
    html = client.get(f"/console/kyc/member/{member.number}/").content.decode()
    assert html.index(f"/console/kyc/{second.pk}/") < html.index(f"/console/kyc/{first.pk}/")
    assert "Photo too dark" in html
    assert client.get("/console/kyc/member/000000000000/").status_code == 404
