"""KYC-1..5 through the services: submission, pre-check, consent, review, provider results.

Every refusal asserts that nothing changed: no submission, consent, outbox message or
audit event, and the member untouched.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import time_machine
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from patron.core import audit
from patron.core.crypto import blind_index
from patron.core.exceptions import Conflict, Forbidden, NotFound, PatronError
from patron.core.models import AuditEvent
from patron.members import selectors_kyc
from patron.members.models import Consent, KycSubmission, Member
from patron.members.services.kyc import (
    approve_kyc,
    record_provider_result,
    record_reveal,
    reject_kyc,
    submit_kyc,
)
from patron.members.tests.kyc_factories import (
    ADULT_BIRTH,
    ADULT_ID,
    grant,
    id_number_for,
    image_bytes,
    make_member,
    make_reviewer,
    make_staff,
    png_claiming_size,
    publish_sensitive,
    state,
    with_bad_checksum,
)
from patron.notify.models import OutboxMessage

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def sensitive():
    return publish_sensitive("1.0")


def submit(member, **overrides):
    values = {
        "member": member,
        "name": "王小明",
        "id_number": ADULT_ID,
        "front": image_bytes("JPEG"),
        "back": image_bytes("PNG"),
        "actor": audit.Actor.user(member.user),
        "accept_sensitive": "sensitive@1.0",
    }
    values.update(overrides)
    return submit_kyc(**values)


def refusal(member, **overrides) -> PatronError:
    before = state(member)
    with pytest.raises(PatronError) as caught:
        submit(member, **overrides)
    assert state(member) == before
    return caught.value


def field_codes(error: PatronError) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in error.errors]


# --- Submission ------------------------------------------------------------------------------


def test_kyc_1_passing_submission_is_stored_encrypted_for_review(sensitive):
    member = make_member()
    front, back = image_bytes("JPEG"), image_bytes("PNG")

    submission = submit(member, id_number=ADULT_ID.lower(), front=front, back=back)

    fresh = KycSubmission.objects.get(pk=submission.pk)
    assert fresh.status == KycSubmission.Status.PENDING_REVIEW
    assert (fresh.name, fresh.id_number) == ("王小明", ADULT_ID)
    assert fresh.id_number_index == blind_index(ADULT_ID, "id_number")
    assert (fresh.front_content_type, fresh.back_content_type) == ("image/jpeg", "image/png")
    assert fresh.front_image[:3] == b"\xff\xd8\xff"
    assert fresh.back_image[:8] == b"\x89PNG\r\n\x1a\n"
    assert fresh.submitted_at == NOW
    assert fresh.reasons == []
    # KYC-5: the consent is recorded with the submission, in the same transaction.
    consent = Consent.objects.get(member=member)
    assert (consent.document_id, consent.granted, consent.channel) == (sensitive.pk, True, "api")
    events = list(AuditEvent.objects.order_by("id").values_list("action", "subject_id", "details"))
    assert events == [
        (
            "consent.granted",
            str(member.pk),
            {"document_id": sensitive.pk, "consent_id": consent.pk},
        ),
        (
            "kyc.submitted",
            str(submission.pk),
            {"member": member.pk, "consent_document": sensitive.pk},
        ),
    ]
    assert OutboxMessage.objects.count() == 0
    assert Member.objects.get(pk=member.pk).kyc_verified_at is None


def test_kyc_5_name_id_number_and_photos_are_ciphertext_in_the_database(sensitive):
    member = make_member()
    submission = submit(member)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, id_number, front_image, back_image FROM members_kycsubmission "
            "WHERE id = %s",
            [submission.pk],
        )
        row = cursor.fetchone()
    raw = " ".join(row)
    assert "王小明" not in raw and ADULT_ID not in raw and ADULT_ID[:14] not in raw
    assert all(value.startswith("v1.") for value in row)


def test_kyc_2_stored_photo_is_a_reencoding_without_metadata(sensitive):
    import io

    from PIL import Image

    source = Image.effect_noise((120, 80), 50).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    buffer = io.BytesIO()
    source.save(buffer, format="JPEG", exif=exif.tobytes())
    assert b"PhoneMaker" in buffer.getvalue()

    submission = submit(make_member(), front=buffer.getvalue())

    stored = KycSubmission.objects.get(pk=submission.pk).front_image
    assert b"PhoneMaker" not in stored
    assert Image.open(io.BytesIO(stored)).size == (120, 80)


def test_kyc_5_consent_already_on_record_is_enough(sensitive):
    member = make_member()
    grant(member, sensitive)
    submission = submit(member, accept_sensitive=None)
    assert submission.status == KycSubmission.Status.PENDING_REVIEW
    assert Consent.objects.filter(member=member).count() == 1  # no second grant row


def test_kyc_2_name_comparison_ignores_spacing_width_and_interpunct_forms(sensitive):
    member = make_member(name="阿依古丽·买买提")
    submission = submit(member, name=" 阿依古丽•买买提 ")
    assert submission.name == "阿依古丽•买买提"


def test_kyc_2_member_without_name_on_file_may_submit_any_name(sensitive):
    member = make_member(name="", birth_date=None)
    assert submit(member, name="李四").status == KycSubmission.Status.PENDING_REVIEW


def test_kyc_2_enterprise_contact_person_is_verified_against_contact_name(sensitive):
    member = make_member(kind=Member.Kind.ENTERPRISE, name="", birth_date=None, contact_name="赵六")
    assert submit(member, name="赵六").status == KycSubmission.Status.PENDING_REVIEW
    other = make_member(kind=Member.Kind.ENTERPRISE, name="", birth_date=None, contact_name="赵六")
    error = refusal(other, name="钱七")
    assert field_codes(error) == [("name", "name_mismatch")]


# --- Refusals: consent (KYC-5) -----------------------------------------------------------


def test_kyc_5_missing_sensitive_consent_is_refused(sensitive):
    error = refusal(make_member(), accept_sensitive=None)
    assert (error.status, error.code) == (422, "sensitive_consent_required")
    assert field_codes(error) == [("accept_sensitive", "sensitive_consent_required")]


def test_kyc_5_withdrawn_consent_is_not_on_record(sensitive):
    member = make_member()
    grant(member, sensitive)
    grant(member, sensitive, granted=False)
    error = refusal(member, accept_sensitive="")
    assert error.code == "sensitive_consent_required"


def test_kyc_5_consent_to_an_old_version_is_refused(sensitive):
    member = make_member()
    grant(member, sensitive)
    publish_sensitive("2.0", published_at=NOW - dt.timedelta(hours=1))
    error = refusal(member, accept_sensitive=None)
    assert error.code == "sensitive_consent_required"
    error = refusal(member, accept_sensitive="sensitive@1.0")
    assert field_codes(error) == [("accept_sensitive", "consent_document_not_current")]


def test_kyc_5_no_published_notice_means_no_submission():
    error = refusal(make_member())
    assert field_codes(error) == [("accept_sensitive", "no_sensitive_document")]


def test_kyc_5_consent_is_checked_before_anything_else_is_looked_at(sensitive):
    error = refusal(make_member(), accept_sensitive=None, id_number="bad", front=b"x")
    assert field_codes(error) == [("accept_sensitive", "sensitive_consent_required")]


# --- Refusals: pre-check (KYC-2) -----------------------------------------------------------


def test_kyc_2_bad_checksum_is_refused(sensitive):
    error = refusal(make_member(), id_number=with_bad_checksum(ADULT_ID))
    assert (error.status, error.code) == (422, "invalid_id_number")
    assert field_codes(error) == [("id_number", "invalid_id_number")]


def test_kyc_2_minor_is_refused(sensitive):
    born = dt.date(2008, 11, 23)  # 18 tomorrow
    member = make_member(birth_date=born)
    error = refusal(member, id_number=id_number_for(born))
    assert field_codes(error) == [("id_number", "minor")]


def test_kyc_2_eighteenth_birthday_is_old_enough(sensitive):
    born = dt.date(2008, 11, 22)
    submission = submit(make_member(birth_date=born), id_number=id_number_for(born))
    assert submission.status == KycSubmission.Status.PENDING_REVIEW


def test_kyc_2_birth_date_must_match_the_account(sensitive):
    member = make_member(birth_date=dt.date(1991, 3, 7))
    error = refusal(member)
    assert field_codes(error) == [("id_number", "birth_date_mismatch")]


def test_kyc_2_id_number_must_match_the_account(sensitive):
    member = make_member(id_number=id_number_for(ADULT_BIRTH, sequence="456"))
    error = refusal(member)
    assert field_codes(error) == [("id_number", "id_number_mismatch")]


def test_kyc_2_name_must_match_the_account(sensitive):
    error = refusal(make_member(name="王小明"), name="王大明")
    assert (error.code, field_codes(error)) == ("name_mismatch", [("name", "name_mismatch")])


def test_kyc_2_missing_fields_are_each_named(sensitive):
    error = refusal(make_member(), name="  ", id_number="", front=b"", back=None)
    assert error.code == "validation_failed"
    assert field_codes(error) == [
        ("name", "name_required"),
        ("id_number", "id_number_required"),
        ("front", "image_required"),
        ("back", "image_required"),
    ]


def test_kyc_2_text_file_named_jpg_is_refused(sensitive):
    error = refusal(make_member(), front=b"%PDF-1.4 this is not a photo.jpg\n" * 20)
    assert field_codes(error) == [("front", "image_invalid")]


def test_kyc_2_truncated_png_is_refused(sensitive):
    png = image_bytes("PNG")
    error = refusal(make_member(), back=png[: len(png) // 2])
    assert field_codes(error) == [("back", "image_invalid")]


def test_kyc_2_truncated_jpeg_is_refused(sensitive):
    jpeg = image_bytes("JPEG")
    error = refusal(make_member(), front=jpeg[: len(jpeg) // 2])
    assert field_codes(error) == [("front", "image_invalid")]


def test_kyc_2_gif_is_refused(sensitive):
    error = refusal(make_member(), front=image_bytes("GIF"))
    assert field_codes(error) == [("front", "image_type_not_allowed")]


def test_kyc_2_oversized_image_is_refused(sensitive, settings):
    big = image_bytes("PNG", (200, 200))
    settings.PATRON_KYC_MAX_IMAGE_BYTES = len(big) - 1
    error = refusal(make_member(), front=big)
    assert field_codes(error) == [("front", "image_too_large")]


def test_kyc_2_decompression_bomb_is_refused_from_its_header(sensitive):
    error = refusal(make_member(), back=png_claiming_size(60000, 60000))
    assert field_codes(error) == [("back", "image_too_many_pixels")]


def test_kyc_2_pixel_limit_is_configurable(sensitive, settings):
    settings.PATRON_KYC_MAX_IMAGE_PIXELS = 240 * 160  # the default test photo's size
    error = refusal(make_member(), front=image_bytes("PNG", (241, 160)))
    assert field_codes(error) == [("front", "image_too_many_pixels")]


def test_kyc_2_every_failed_check_is_reported_at_once(sensitive):
    error = refusal(
        make_member(),
        name="张三",
        id_number=with_bad_checksum(ADULT_ID),
        front=image_bytes("GIF"),
        back=b"not an image",
    )
    assert field_codes(error) == [
        ("name", "name_mismatch"),
        ("id_number", "invalid_id_number"),
        ("front", "image_type_not_allowed"),
        ("back", "image_invalid"),
    ]


# --- Refusals: state ---------------------------------------------------------------------


def test_kyc_1_second_submission_while_pending_is_refused(sensitive):
    member = make_member()
    submit(member)
    error = refusal(member)
    assert (error.status, error.code) == (409, "kyc_pending")


def test_kyc_3_verified_member_cannot_submit_again(sensitive):
    member = make_member()
    approve_kyc(submission=submit(member), reviewer=make_reviewer())
    error = refusal(Member.objects.get(pk=member.pk))
    assert (error.status, error.code) == (409, "kyc_already_verified")


def test_kyc_1_pending_member_is_refused(sensitive):
    error = refusal(make_member(status=Member.Status.PENDING))
    assert (error.status, error.code) == (409, "member_not_active")


# --- Review (KYC-3) ------------------------------------------------------------------------


def test_kyc_3_approval_sets_the_badge_notifies_and_is_audited(
    sensitive, django_capture_on_commit_callbacks
):
    member = make_member(email="wang@example.com", name="", birth_date=None)
    submission = submit(member)
    reviewer = make_reviewer()
    last_event = AuditEvent.objects.order_by("-id").first().pk

    with django_capture_on_commit_callbacks(execute=True):
        decided = approve_kyc(submission=submission, reviewer=reviewer, reason="clear photos")

    assert (decided.status, decided.reviewed_by_id, decided.reviewed_at, decided.review_note) == (
        KycSubmission.Status.APPROVED,
        reviewer.pk,
        NOW,
        "clear photos",
    )
    fresh = Member.objects.get(pk=member.pk)
    assert fresh.kyc_verified_at == NOW
    # Blank identity fields are filled from the verified card.
    assert (fresh.name, fresh.id_number, fresh.birth_date) == ("王小明", ADULT_ID, "1990-03-07")
    assert fresh.id_number_index == blind_index(ADULT_ID, "id_number")
    messages = list(
        OutboxMessage.objects.order_by("channel").values_list("channel", "template", "status")
    )
    assert messages == [
        ("email", "kyc_approved", "sent"),
        ("inapp", "kyc_approved", "sent"),
        ("sms", "kyc_approved", "sent"),
    ]
    events = list(
        AuditEvent.objects.filter(pk__gt=last_event)
        .order_by("id")
        .values_list("action", "actor_type", "actor_id", "details")
    )
    assert events == [("kyc.approved", "staff", str(reviewer.pk), {"member": member.pk})]
    assert selectors_kyc.kyc_status(fresh).verified is True


def test_kyc_3_rejection_notifies_the_reason_and_allows_resubmission(
    sensitive, sms_outbox, django_capture_on_commit_callbacks
):
    from tests.fixtures import read_sms

    member = make_member()
    submission = submit(member)
    reviewer = make_reviewer()

    with django_capture_on_commit_callbacks(execute=True):
        decided = reject_kyc(submission=submission, reviewer=reviewer, reason="Photo is blurred")

    assert (decided.status, decided.review_note) == (
        KycSubmission.Status.REJECTED,
        "Photo is blurred",
    )
    assert Member.objects.get(pk=member.pk).kyc_verified_at is None
    sms = read_sms(sms_outbox)
    assert [(m["template"], m["to"]) for m in sms] == [("kyc_rejected", member.phone)]
    assert "Photo is blurred" in sms[0]["text"]
    last = AuditEvent.objects.order_by("-id").first()
    assert (last.action, last.details) == ("kyc.rejected", {"member": member.pk})
    assert "blurred" not in str(last.details)
    status = selectors_kyc.kyc_status(member)
    assert (status.status, status.rejection_reason) == ("rejected", "Photo is blurred")

    again = submit(Member.objects.get(pk=member.pk), accept_sensitive=None)
    assert again.status == KycSubmission.Status.PENDING_REVIEW


def test_kyc_3_rejection_needs_a_reason(sensitive):
    submission = submit(make_member())
    before = state(submission.member)
    with pytest.raises(PatronError) as caught:
        reject_kyc(submission=submission, reviewer=make_reviewer(), reason="   ")
    assert (caught.value.status, caught.value.code) == (422, "required")
    assert state(submission.member) == before
    assert KycSubmission.objects.get(pk=submission.pk).status == KycSubmission.Status.PENDING_REVIEW


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_kyc_3_overlong_reason_is_refused(sensitive, decide):
    submission = submit(make_member())
    reviewer = make_reviewer()
    before = state(submission.member)
    with pytest.raises(PatronError) as caught:
        if decide == "approve":
            approve_kyc(submission=submission, reviewer=reviewer, reason="x" * 501)
        else:
            reject_kyc(submission=submission, reviewer=reviewer, reason="x" * 501)
    assert (caught.value.status, caught.value.code) == (422, "too_long")
    assert state(submission.member) == before


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_kyc_3_reviewer_without_permission_is_refused(sensitive, decide):
    submission = submit(make_member())
    clerk = make_staff(permissions=("members.view_kycsubmission",))
    before = state(submission.member)
    with pytest.raises(Forbidden) as caught:
        if decide == "approve":
            approve_kyc(submission=submission, reviewer=clerk)
        else:
            reject_kyc(submission=submission, reviewer=clerk, reason="no")
    assert caught.value.code == "permission_denied"
    assert state(submission.member) == before
    assert KycSubmission.objects.get(pk=submission.pk).status == KycSubmission.Status.PENDING_REVIEW


def test_kyc_3_deciding_twice_is_refused(sensitive):
    submission = submit(make_member())
    reviewer = make_reviewer()
    approve_kyc(submission=submission, reviewer=reviewer)
    before = state(submission.member)
    for attempt in (
        lambda: approve_kyc(submission=submission, reviewer=reviewer),
        lambda: reject_kyc(submission=submission, reviewer=reviewer, reason="changed my mind"),
    ):
        with pytest.raises(Conflict) as caught:
            attempt()
        assert caught.value.code == "kyc_already_decided"
    assert state(submission.member) == before
    assert KycSubmission.objects.get(pk=submission.pk).status == KycSubmission.Status.APPROVED


def test_kyc_3_queue_is_oldest_first_and_skips_decided(sensitive):
    first = submit(make_member())
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        second = submit(make_member())
    with time_machine.travel(NOW - dt.timedelta(minutes=5), tick=False):
        earliest = submit(make_member())
    reject_kyc(submission=first, reviewer=make_reviewer(), reason="blurred")
    with CaptureQueriesContext(connection) as queries:
        queue = list(selectors_kyc.review_queue())
    assert [s.pk for s in queue] == [earliest.pk, second.pk]
    assert "front_image" not in queries.captured_queries[0]["sql"]


def test_priv_3_photo_reveal_is_audited_and_needs_the_permission(sensitive):
    submission = submit(make_member())
    reviewer = make_reviewer()
    record_reveal(submission=submission, viewer=reviewer, part="front")
    last = AuditEvent.objects.order_by("-id").first()
    assert (last.action, last.subject_type, last.subject_id, last.actor_id, last.details) == (
        "member.personal_data_revealed",
        "member",
        str(submission.member_id),
        str(reviewer.pk),
        {
            "member_id": submission.member_id,
            "staff_user_id": reviewer.pk,
            "category": "kyc_review",
            "kyc_submission_id": submission.pk,
            "fields": ["front_image"],
        },
    )
    before = state()
    with pytest.raises(Forbidden):
        record_reveal(submission=submission, viewer=make_staff(), part="back")
    assert state() == before


@pytest.mark.django_db(transaction=True)
def test_kyc_3_two_reviewers_at_once_exactly_one_wins():
    publish_sensitive("1.0")
    member = make_member()
    submission = submit(member)
    reviewers = [make_reviewer(), make_reviewer()]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            if index == 0:
                approve_kyc(submission=submission, reviewer=reviewers[0])
            else:
                reject_kyc(submission=submission, reviewer=reviewers[1], reason="blurred")
            outcomes.append("won")
        except Conflict as exc:
            outcomes.append(exc.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["kyc_already_decided", "won"]
    fresh = KycSubmission.objects.get(pk=submission.pk)
    decisions = list(
        AuditEvent.objects.filter(action__in=["kyc.approved", "kyc.rejected"]).values_list(
            "action", flat=True
        )
    )
    assert len(decisions) == 1
    assert decisions[0] == f"kyc.{fresh.status}"
    assert (
        OutboxMessage.objects.filter(template__startswith="kyc_")
        .values("template")
        .distinct()
        .count()
        == 1
    )
    verified = Member.objects.get(pk=member.pk).kyc_verified_at is not None
    assert verified == (fresh.status == KycSubmission.Status.APPROVED)
    assert audit.verify().ok


# --- Provider results (KYC-4) ----------------------------------------------------------------


def test_kyc_4_provider_result_is_stored_and_audited_once(sensitive):
    submission = submit(make_member())
    stored = record_provider_result(
        submission_ref=submission.pk, result="match", score=97.5, reference="prov-1"
    )
    assert stored.provider_reference == "prov-1"
    assert stored.provider_result == {
        "result": "match",
        "score": 97.5,
        "reference": "prov-1",
        "received_at": NOW.isoformat(),
    }
    assert stored.status == KycSubmission.Status.PENDING_REVIEW  # never decides by itself
    count = AuditEvent.objects.filter(action="kyc.provider_result").count()
    # A retry by the provider (found by its own reference) changes nothing.
    again = record_provider_result(
        submission_ref="prov-1", result="match", score=97.5, reference="prov-1"
    )
    assert again.pk == submission.pk
    assert AuditEvent.objects.filter(action="kyc.provider_result").count() == count == 1


def test_kyc_4_unknown_submission_is_not_found(sensitive):
    before = state()
    with pytest.raises(NotFound) as caught:
        record_provider_result(submission_ref="nope", result="match", reference="r")
    assert caught.value.code == "kyc_submission_not_found"
    assert state() == before
