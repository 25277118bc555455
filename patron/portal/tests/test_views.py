"""Portal pages, through Django's test client against the real services and database.

Every refusal re-renders the form with the error next to its field and proves nothing was
written: no user, member, consent, code, outbox message or audit event.
"""

from __future__ import annotations

import datetime as dt
import re
from itertools import count

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from patron.core.models import AuditEvent
from patron.members.models import Consent, ConsentDocument, Member, User, VerificationCode
from patron.notify.models import OutboxMessage
from tests.fixtures import read_sms

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
PASSWORD = "violet tiger lantern"
ADULT_ID = "110105200001011232"  # born 2000-01-01
CREDIT_CODE = "91110000802100433B"
_seq = count(1)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def documents(db) -> dict[str, ConsentDocument]:
    docs = {}
    for kind, required in (
        ("terms", True),
        ("privacy", True),
        ("sensitive", False),
        ("marketing", False),
    ):
        docs[kind] = ConsentDocument.objects.create(
            kind=kind,
            version="1.0",
            title=f"{kind} 中文标题",
            body=f"{kind} 中文正文",
            title_en=f"{kind.title()} title",
            body_en=f"{kind.title()} body",
            required=required,
            published_at=NOW - dt.timedelta(days=30),
        )
    return docs


def counts() -> dict[str, int]:
    models = (User, Member, Consent, VerificationCode, OutboxMessage, AuditEvent)
    return {model.__name__: model.objects.count() for model in models}


def individual_form(**changes) -> dict[str, str]:
    n = next(_seq)
    data = {
        "username": f"portal_{n}",
        "password": PASSWORD,
        "password_again": PASSWORD,
        "name": "王小明",
        "birth_date": "2000-01-01",
        "id_number": "",
        "phone": f"139{n:08d}",
        "email": f"portal{n}@example.com",
        "address": "",
        "referrer": "",
        "accept_terms": "on",
        "accept_privacy": "on",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def enterprise_form(**changes) -> dict[str, str]:
    n = next(_seq)
    data = {
        "username": f"company_{n}",
        "password": PASSWORD,
        "password_again": PASSWORD,
        "company_name": "北京星光影城有限公司",
        "credit_code": CREDIT_CODE,
        "contact_name": "李华",
        "phone": f"137{n:08d}",
        "email": "",
        "accept_terms": "on",
        "accept_privacy": "on",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def register(client: Client, data: dict, kind: str = "individual", capture=None):
    url = reverse("portal:register") if kind == "individual" else f"/register/{kind}/"
    if capture is None:
        return client.post(url, data)
    with capture(execute=True):
        return client.post(url, data)


def field_error(response, field: str) -> str:
    """The text of the error list Django links to the field (id="id_<field>_error")."""
    html = response.content.decode()
    match = re.search(rf'<ul class="errorlist" id="id_{field}_error">(.*?)</ul>', html, re.S)
    assert match, f"no error shown for {field}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def sms_code(path) -> str:
    messages = read_sms(path)
    assert messages, "no SMS was sent"
    match = re.search(r"\b(\d{6})\b", messages[-1]["text"])
    assert match
    return match.group(1)


# --- registration ------------------------------------------------------------------------


def test_reg_2_portal_registers_an_individual_signs_in_and_sends_the_phone_code(
    client, documents, sms_outbox, django_capture_on_commit_callbacks
):
    data = individual_form(marketing_opt_in="on")

    response = register(client, data, capture=django_capture_on_commit_callbacks)

    assert response.status_code == 302
    assert response["Location"] == "/verify/phone/"
    member = Member.objects.get(user__username=data["username"])
    assert member.status == Member.Status.PENDING
    assert member.kind == "individual"
    assert member.phone == "+86" + data["phone"]
    assert member.marketing_opt_in is True
    assert sorted(
        (c.document.kind, c.document.version, c.granted, c.channel) for c in member.consents.all()
    ) == [
        ("marketing", "1.0", True, "portal"),
        ("privacy", "1.0", True, "portal"),
        ("terms", "1.0", True, "portal"),
    ]
    assert client.session["_auth_user_id"] == str(member.user_id)
    sms = read_sms(sms_outbox)
    assert [(m["to"], m["template"]) for m in sms] == [(member.phone, "verification_code")]


def test_reg_1_portal_registers_an_enterprise(
    client, documents, sms_outbox, django_capture_on_commit_callbacks
):
    data = enterprise_form()

    response = register(client, data, "enterprise", capture=django_capture_on_commit_callbacks)

    assert response.status_code == 302
    member = Member.objects.get(user__username=data["username"])
    assert (member.kind, member.company_name, member.contact_name) == (
        "enterprise",
        "北京星光影城有限公司",
        "李华",
    )
    assert member.credit_code == CREDIT_CODE
    assert len(read_sms(sms_outbox)) == 1


def test_reg_5_register_page_shows_current_documents_and_separate_marketing_box(client, documents):
    response = client.get("/register/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'href="/documents/terms/1.0/"' in html
    assert 'href="/documents/privacy/1.0/"' in html
    assert re.search(r'name="accept_terms"[^>]*required', html)
    assert re.search(r'name="accept_privacy"[^>]*required', html)
    marketing = re.search(r"<input[^>]*name=\"marketing_opt_in\"[^>]*>", html).group(0)
    assert "required" not in marketing
    assert "checked" not in marketing


def case(name: str, changes: dict, kind: str, field: str, message: str):
    """A refused registration: form changes, the field the error sits by, words it says."""
    return pytest.param(changes, kind, field, message, id=name)


REFUSALS = [
    case("reg_4_minor", {"birth_date": "2010-05-01"}, "individual", "birth_date", "年满 18 周岁"),
    case(
        "reg_1_bad_id_number",
        {"id_number": "110105200001011233"},
        "individual",
        "id_number",
        "身份证",
    ),
    case(
        "reg_4_minor_by_id_number",
        {"birth_date": "", "id_number": "110105200811231232"},
        "individual",
        "id_number",
        "年满 18 周岁",
    ),
    case(
        "reg_1_bad_credit_code",
        {"credit_code": "91110000802100433A"},
        "enterprise",
        "credit_code",
        "统一社会信用代码",
    ),
    case("reg_2_bad_phone", {"phone": "12345"}, "individual", "phone", "手机号"),
    case(
        "reg_2_passwords_differ",
        {"password_again": "another long phrase"},
        "individual",
        "password_again",
        "两次",
    ),
    case(
        "reg_5_terms_not_accepted",
        {"accept_terms": None},
        "individual",
        "accept_terms",
        "必须接受",
    ),
    case(
        "reg_2_common_password",
        {"password": "password123", "password_again": "password123"},
        "individual",
        "password",
        "",
    ),
]


@pytest.mark.parametrize(("changes", "kind", "field", "message"), REFUSALS)
def test_portal_refusal_rerenders_the_form_with_the_field_error_and_creates_nothing(
    client, documents, sms_outbox, django_capture_on_commit_callbacks, changes, kind, field, message
):
    data = individual_form(**changes) if kind == "individual" else enterprise_form(**changes)
    before = counts()

    response = register(client, data, kind, capture=django_capture_on_commit_callbacks)

    assert response.status_code == 200
    assert message in field_error(response, field)
    html = response.content.decode()
    assert 'class="error-summary"' in html
    assert f'href="#id_{field}"' in html
    assert re.search(rf'id="id_{field}"[^>]*aria-invalid="true"', html) or re.search(
        rf'aria-invalid="true"[^>]*id="id_{field}"', html
    )
    assert counts() == before
    assert read_sms(sms_outbox) == []
    assert "_auth_user_id" not in client.session


def test_reg_2_form_and_service_refusals_are_shown_together(client, documents, sms_outbox):
    before = counts()

    response = register(
        client,
        individual_form(
            password_again="another long phrase",
            accept_privacy=None,
            birth_date="2010-05-01",
            phone="12345",
        ),
    )

    assert field_error(response, "password_again") == "两次输入的密码不一致。"
    assert field_error(response, "accept_privacy") == "必须接受此文件才能注册。"
    assert field_error(response, "birth_date") == "会员须年满 18 周岁。"
    assert field_error(response, "phone") == "这不是有效的手机号码。"
    assert 'id="id_accept_terms_error"' not in response.content.decode()
    assert counts() == before
    assert read_sms(sms_outbox) == []


def test_reg_2_duplicate_phone_is_refused_next_to_the_phone_field(
    client, documents, sms_outbox, django_capture_on_commit_callbacks
):
    first = individual_form()
    register(Client(), first, capture=django_capture_on_commit_callbacks)
    before = counts()
    sent = len(read_sms(sms_outbox))

    response = register(
        client, individual_form(phone=first["phone"]), capture=django_capture_on_commit_callbacks
    )

    assert response.status_code == 200
    assert field_error(response, "phone") == "该手机号已被注册。"
    assert counts() == before
    assert len(read_sms(sms_outbox)) == sent


def test_reg_2_duplicate_username_is_refused_next_to_the_username_field(
    client, documents, sms_outbox, django_capture_on_commit_callbacks
):
    first = individual_form()
    register(Client(), first, capture=django_capture_on_commit_callbacks)
    before = counts()

    response = register(client, individual_form(username=first["username"]))

    assert field_error(response, "username") == "该用户名已被占用。"
    assert counts() == before


def test_portal_register_post_without_csrf_token_is_refused(documents):
    client = Client(enforce_csrf_checks=True)
    before = counts()

    response = client.post("/register/", individual_form())

    assert response.status_code == 403
    assert counts() == before


# --- phone verification --------------------------------------------------------------------


@pytest.fixture
def pending(client, documents, sms_outbox, django_capture_on_commit_callbacks):
    """A member registered through the portal and signed in, with the code's SMS."""
    data = individual_form(email="", address="")
    register(client, data, capture=django_capture_on_commit_callbacks)
    member = Member.objects.get(user__username=data["username"])
    return member, sms_code(sms_outbox)


def test_reg_6_verify_page_shows_masked_phone_and_resend_wait(client, pending):
    member, _code = pending

    response = client.get("/verify/phone/")

    html = response.content.decode()
    assert response.status_code == 200
    assert member.phone[-4:] in html and member.phone not in html
    assert re.search(r'id="resend"[^>]*disabled', html)
    assert '<span id="resend-seconds">60</span>' in html


def test_reg_6_wrong_code_is_refused_next_to_the_field_and_member_stays_pending(
    client, pending, sms_outbox
):
    member, code = pending
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    events = AuditEvent.objects.count()

    response = client.post("/verify/phone/", {"code": wrong})

    assert response.status_code == 200
    assert field_error(response, "code") == "验证码不正确。"
    member.refresh_from_db()
    assert member.status == Member.Status.PENDING
    assert member.phone_verified_at is None
    assert AuditEvent.objects.count() == events
    assert len(read_sms(sms_outbox)) == 1


def test_reg_6_code_that_is_not_six_digits_is_refused_by_the_form(client, pending):
    member, _code = pending
    attempts = VerificationCode.objects.get(member=member).attempts

    response = client.post("/verify/phone/", {"code": "12ab"})

    assert field_error(response, "code") == "请输入短信中的 6 位数字。"
    assert VerificationCode.objects.get(member=member).attempts == attempts


def test_reg_7_right_code_activates_and_lands_in_member_centre_with_profile_prompt(
    client, pending, sms_outbox, django_capture_on_commit_callbacks
):
    member, code = pending

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/verify/phone/", {"code": code}, follow=True)

    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE
    assert response.redirect_chain == [("/", 302)]
    html = response.content.decode()
    assert "完善个人资料" in html
    assert member.number in html
    assert [m["template"] for m in read_sms(sms_outbox)] == ["verification_code", "welcome"]


def test_reg_6_resend_within_cooldown_shows_the_wait_and_sends_nothing(
    client, pending, sms_outbox, django_capture_on_commit_callbacks, _clock
):
    _clock.shift(dt.timedelta(seconds=20))
    before = counts()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/verify/phone/resend/", follow=True)

    assert "请等待 40 秒后再获取验证码。" in response.content.decode()
    assert counts() == before
    assert len(read_sms(sms_outbox)) == 1


def test_reg_6_resend_after_cooldown_sends_a_new_code(
    client, pending, sms_outbox, django_capture_on_commit_callbacks, _clock
):
    member, _code = pending
    _clock.shift(dt.timedelta(seconds=61))

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/verify/phone/resend/")

    assert len(read_sms(sms_outbox)) == 2
    assert VerificationCode.objects.filter(member=member).count() == 2


# --- access, documents, language ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/profile/", "/consents/", "/verify/phone/"])
def test_member_pages_require_sign_in(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_reg_5_document_pages_are_public_and_show_each_version(client, documents):
    ConsentDocument.objects.create(
        kind="terms",
        version="2.0",
        title="服务协议 2.0",
        body="新条款",
        required=True,
        published_at=NOW - dt.timedelta(days=1),
    )

    current = client.get("/documents/terms/")
    old = client.get("/documents/terms/1.0/")
    missing = client.get("/documents/terms/9.9/")

    assert "新条款" in current.content.decode()
    assert "terms 中文正文" in old.content.decode()
    assert missing.status_code == 404


def test_language_switch_shows_english(client, documents):
    chinese = client.get("/register/")
    switched = client.post("/i18n/setlang/", {"language": "en", "next": "/register/"})
    english = client.get("/register/")

    assert '<html lang="zh-Hans">' in chinese.content.decode()
    assert "创建账户" in chinese.content.decode()
    assert switched.status_code == 302
    html = english.content.decode()
    assert '<html lang="en">' in html
    assert "Create my account" in html
    assert "创建账户" not in html


def test_reg_4_refusal_is_shown_in_english_when_english_is_chosen(client, documents):
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})

    response = register(client, individual_form(birth_date="2010-05-01"))

    assert field_error(response, "birth_date") == "Members must be at least 18 years old."


# --- profile (REG-8) -----------------------------------------------------------------------


@pytest.fixture
def active(client, pending, django_capture_on_commit_callbacks):
    """A member who registered and verified the phone through the portal, signed in."""
    member, code = pending
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/verify/phone/", {"code": code})
    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE
    return member


def profile_form(member: Member, **changes) -> dict[str, str]:
    data = {"name": member.name, "address": member.address, "phone": member.phone}
    data["email"] = member.email
    data.update(changes)
    return data


def test_reg_8_profile_saves_plain_fields_without_any_code(client, active, sms_outbox):
    codes = VerificationCode.objects.count()

    response = client.post("/profile/", profile_form(active, address="上海市黄浦区 2 号"))

    assert response.status_code == 302
    assert response["Location"] == "/profile/"
    active.refresh_from_db()
    assert active.address == "上海市黄浦区 2 号"
    assert VerificationCode.objects.count() == codes
    page = client.get("/").content.decode()
    assert "地址" not in re.search(r'id="complete-title".*?</div>', page, re.S).group(0)


def test_reg_6_phone_change_within_the_resend_cooldown_shows_the_wait_and_changes_nothing(
    client, active, sms_outbox, _clock
):
    _clock.shift(dt.timedelta(seconds=15))
    before = counts()

    response = client.post("/profile/", profile_form(active, phone="13800001111"))

    assert response.status_code == 200
    assert "请等待 45 秒后再获取验证码。" in response.content.decode()
    assert counts() == before
    active.refresh_from_db()
    assert active.phone != "+8613800001111"


def test_reg_8_new_phone_is_used_only_after_its_code_is_confirmed(
    client, active, sms_outbox, django_capture_on_commit_callbacks, _clock
):
    old_phone = active.phone
    _clock.shift(dt.timedelta(seconds=61))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/profile/", profile_form(active, phone="13800001111"))

    assert response["Location"] == "/verify/phone/"
    active.refresh_from_db()
    assert active.phone == old_phone
    sms = read_sms(sms_outbox)[-1]
    assert (sms["to"], sms["template"]) == ("+8613800001111", "verification_code")
    page = client.get("/verify/phone/").content.decode()
    assert "确认新手机号" in page
    assert "+86138****1111" in page
    profile_page = client.get("/profile/").content.decode()
    assert "新手机号正在等待确认" in profile_page

    response = client.post("/verify/phone/", {"code": sms_code(sms_outbox)})

    assert response["Location"] == "/profile/"
    active.refresh_from_db()
    assert active.phone == "+8613800001111"


def test_reg_8_profile_refuses_a_phone_another_member_has_and_changes_nothing(
    client, active, documents, sms_outbox, django_capture_on_commit_callbacks
):
    other = individual_form()
    register(Client(), other, capture=django_capture_on_commit_callbacks)
    before = counts()
    sent = len(read_sms(sms_outbox))

    response = client.post("/profile/", profile_form(active, phone=other["phone"]))

    assert response.status_code == 200
    assert field_error(response, "phone") == "该手机号已被注册。"
    assert counts() == before
    assert len(read_sms(sms_outbox)) == sent


# --- consents (REG-5, PRIV-1, PRIV-9) ------------------------------------------------------


def test_priv_1_withdrawing_and_granting_marketing_is_appended_to_the_history(
    client, active, documents, _clock
):
    _clock.shift(dt.timedelta(minutes=1))
    client.post("/consents/", {"kind": "marketing", "granted": "1"})
    _clock.shift(dt.timedelta(minutes=1))
    response = client.post("/consents/", {"kind": "marketing", "granted": "0"}, follow=True)

    active.refresh_from_db()
    assert active.marketing_opt_in is False
    assert [
        (c.document.kind, c.granted, c.channel) for c in Consent.objects.filter(member=active)
    ] == [
        ("marketing", False, "portal"),
        ("marketing", True, "portal"),
        ("privacy", True, "portal"),
        ("terms", True, "portal"),
    ]
    html = response.content.decode()
    assert "已撤回您的同意。" in html
    history = re.search(r'id="history-title".*?</table>', html, re.S).group(0)
    rows = [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", history, re.S)
    ]
    assert [row for row in rows if row] == [
        ["2026-11-22 18:02", "marketing 中文标题", "1.0", "已撤回", "会员门户"],
        ["2026-11-22 18:01", "marketing 中文标题", "1.0", "同意", "会员门户"],
        ["2026-11-22 18:00", "privacy 中文标题", "1.0", "同意", "会员门户"],
        ["2026-11-22 18:00", "terms 中文标题", "1.0", "同意", "会员门户"],
    ]


def test_priv_1_required_document_cannot_be_withdrawn_here(client, active, documents):
    before = counts()

    response = client.post("/consents/", {"kind": "terms", "granted": "0"}, follow=True)

    assert "此处无法进行该操作。" in response.content.decode()
    assert counts() == before


def test_priv_9_consents_page_shows_a_new_optional_version_and_accepting_it_is_recorded(
    client, active, documents, _clock
):
    # (A new *required* version sends the member to the sign-in gate's accept page first.)
    client.post("/consents/", {"kind": "marketing", "granted": "1"})
    ConsentDocument.objects.create(
        kind="marketing",
        version="2.0",
        title="营销信息 2.0",
        body="新条款",
        required=False,
        published_at=NOW,
    )
    _clock.shift(dt.timedelta(minutes=1))

    page = client.get("/consents/").content.decode()
    response = client.post("/consents/", {"kind": "marketing", "granted": "1"}, follow=True)

    assert "已接受旧版本（1.0）" in page
    latest = Consent.objects.filter(member=active).first()
    assert (latest.document.kind, latest.document.version, latest.granted) == (
        "marketing",
        "2.0",
        True,
    )
    assert "已接受（版本 2.0）" in response.content.decode()


def test_reg_6_email_is_verified_with_a_code_sent_on_request(
    client, documents, sms_outbox, mailoutbox, django_capture_on_commit_callbacks
):
    data = individual_form()
    register(client, data, capture=django_capture_on_commit_callbacks)
    member = Member.objects.get(user__username=data["username"])

    page = client.get("/verify/email/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/verify/email/resend/")
    assert [message.to for message in mailoutbox] == [[data["email"]]]
    code = re.search(r"\b(\d{6})\b", mailoutbox[0].body).group(1)
    response = client.post("/verify/email/", {"code": code})

    assert "获取验证码" in page
    assert "p***@example.com" in page
    assert response["Location"] == "/"
    member.refresh_from_db()
    assert member.email_verified_at is not None
