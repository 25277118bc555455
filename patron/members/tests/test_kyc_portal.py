"""The portal's real-name verification page (KYC-1..5), through the real view and service."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from patron.core import clock
from patron.core.audit import Actor
from patron.members.models import Consent, KycSubmission, Member
from patron.members.services.kyc import approve_kyc, reject_kyc, submit_kyc
from patron.members.tests.kyc_factories import (
    ADULT_ID,
    grant,
    id_number_for,
    image_bytes,
    make_member,
    make_reviewer,
    publish_sensitive,
    state,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def document():
    return publish_sensitive("1.0")


@pytest.fixture
def member():
    return make_member()


@pytest.fixture
def client(member) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


def files(**overrides):
    data = {
        "name": "王小明",
        "id_number": ADULT_ID,
        "accept_sensitive": "on",
        "sensitive_version": "1.0",
        "front": SimpleUploadedFile("front.jpg", image_bytes("JPEG"), "image/jpeg"),
        "back": SimpleUploadedFile("back.png", image_bytes("PNG"), "image/png"),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def direct_submit(member):
    return submit_kyc(
        member=member,
        name="王小明",
        id_number=ADULT_ID,
        front=image_bytes("JPEG"),
        back=image_bytes("PNG"),
        actor=Actor.user(member.user),
        accept_sensitive="sensitive@1.0",
    )


def test_kyc_1_page_shows_the_form_with_the_consent_box(client, document):
    response = client.get("/kyc/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'enctype="multipart/form-data"' in html
    assert 'name="accept_sensitive"' in html
    assert 'accept="image/jpeg,image/png"' in html
    assert "/documents/sensitive/1.0/" in html


def test_kyc_1_member_submits_through_the_portal(client, member, document):
    response = client.post("/kyc/", files())
    assert response.status_code == 302
    assert response["Location"] == "/kyc/"
    submission = KycSubmission.objects.get(member=member)
    assert submission.status == KycSubmission.Status.PENDING_REVIEW
    consent = Consent.objects.get(member=member)
    assert (consent.document_id, consent.channel) == (document.pk, "portal")
    page = client.get("/kyc/").content.decode()
    assert "王**" in page and 'name="front"' not in page  # pending: no second form


def test_kyc_5_without_the_consent_box_nothing_is_stored(client, member, document):
    before = state(member)
    response = client.post("/kyc/", files(accept_sensitive=None))
    assert response.status_code == 422
    assert 'id="error-summary"' in response.content.decode()
    assert state(member) == before


def test_kyc_5_consent_on_record_hides_the_box(client, member, document):
    grant(member, document)
    html = client.get("/kyc/").content.decode()
    assert 'name="accept_sensitive"' not in html
    response = client.post("/kyc/", files(accept_sensitive=None, sensitive_version=None))
    assert response.status_code == 302
    assert Consent.objects.filter(member=member).count() == 1


def test_kyc_5_a_newer_notice_published_meanwhile_is_refused(client, member, document):
    publish_sensitive("2.0", published_at=clock.now() - dt.timedelta(minutes=1))
    before = state(member)
    response = client.post("/kyc/", files(sensitive_version="1.0"))
    assert response.status_code == 422
    assert state(member) == before


def test_kyc_2_precheck_reasons_appear_next_to_the_fields(client, member, document):
    before = state(member)
    response = client.post(
        "/kyc/",
        files(
            id_number=id_number_for(dt.date(2010, 1, 1)),  # a minor's card
            front=SimpleUploadedFile("front.jpg", b"not a photo at all", "image/jpeg"),
        ),
    )
    assert response.status_code == 422
    form = response.context["form"]
    assert set(form.errors) == {"id_number", "front"}
    assert state(member) == before


def test_kyc_3_verified_badge_and_rejection_reason_are_shown(client, member, document):
    submission = direct_submit(member)
    reject_kyc(submission=submission, reviewer=make_reviewer(), reason="Glare on the photo")
    html = client.get("/kyc/").content.decode()
    assert "Glare on the photo" in html
    assert 'name="front"' in html  # may submit again

    again = direct_submit(Member.objects.get(pk=member.pk))
    approve_kyc(submission=again, reviewer=make_reviewer())
    html = client.get("/kyc/").content.decode()
    assert "✓" in html and 'name="front"' not in html


def test_kyc_1_second_post_while_pending_is_refused(client, member, document):
    direct_submit(member)
    before = state(member)
    response = client.post("/kyc/", files())
    assert response.status_code == 409
    assert state(member) == before


def test_kyc_1_page_needs_a_signed_in_member(document):
    response = Client().get("/kyc/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
