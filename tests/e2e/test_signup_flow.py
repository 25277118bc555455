"""The whole member journey in a real browser (REG-2, REG-6, REG-7, AUTH-3).

Register through the portal, verify the phone with the code from the SMS outbox file, sign
out, sign in with the password, turn on two-factor authentication (TOTP) on the security
page, sign out, sign in again with password and TOTP code, and land in the member centre.
Each step leaves a screenshot in var/e2e/.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import struct
import time

import pytest
import time_machine

from patron.members.models import ConsentDocument, Member
from tests.fixtures import read_sms

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

USERNAME = "e2e_member"
PASSWORD = "violet tiger lantern"
PHONE = "13912345678"
TOTP_PERIOD = 30


def totp(secret: str, at: float | None = None, digits: int = 6) -> str:
    """RFC 6238 TOTP (HMAC-SHA1, 30-second steps), as an authenticator app computes it."""
    key = base64.b32decode(secret.replace(" ", "").upper() + "=" * (-len(secret) % 8))
    counter = int((time.time() if at is None else at) // TOTP_PERIOD)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def test_totp_helper_matches_rfc_6238_test_vector():
    # RFC 6238 appendix B, SHA-1 key "12345678901234567890", T = 59 s -> 94287082 (8 digits)
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp(secret, at=59, digits=8) == "94287082"


def fresh_window(traveller) -> None:
    """Move the clock to the start of the next TOTP step: a code computed now stays valid
    while the browser submits it, and differs from any code used in the previous step
    (allauth refuses a code that was already used)."""
    now = time.time()
    traveller.shift(TOTP_PERIOD - (now % TOTP_PERIOD) + 1)


def publish_documents() -> None:
    published = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for kind, required, title in (
        ("terms", True, "服务协议"),
        ("privacy", True, "隐私政策"),
        ("marketing", False, "营销信息"),
    ):
        ConsentDocument.objects.create(
            kind=kind,
            version="1.0",
            title=title,
            body=f"{title}正文。",
            title_en=kind.title(),
            body_en="Body.",
            required=required,
            published_at=published,
        )


class Journey:
    """The browser plus where it keeps its screenshots."""

    def __init__(self, page, base_url: str, shots):
        self.page = page
        self.base = base_url
        self.shots = shots
        self.step = 0

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(self.shots / f"{self.step:02d}-{name}.png"), full_page=True)

    def submit_main_form(self) -> None:
        """Press the submit button of the page's form in <main> (the header has forms too)."""
        with self.page.expect_navigation():
            self.page.locator("main form button[type=submit]").first.click()

    def path(self) -> str:
        return re.sub(r"^https?://[^/]+", "", self.page.url)

    def sign_out(self) -> None:
        with self.page.expect_navigation():
            self.page.locator("header form[action*='logout'] button[type=submit]").click()
        assert self.page.locator("header a[href*='/accounts/login/']").count() == 1

    def sign_in_with_password(self) -> None:
        self.goto("/accounts/login/")
        self.page.fill("input[name=login]", USERNAME)
        self.page.fill("input[name=password]", PASSWORD)
        self.shot("sign-in")
        self.submit_main_form()


def test_reg_7_auth_3_register_verify_sign_in_enable_2fa_and_sign_in_again(
    live_server, page, screenshot_dir, sms_outbox
):
    publish_documents()
    journey = Journey(page, live_server.url, screenshot_dir)

    with time_machine.travel(dt.datetime.now(dt.UTC), tick=True) as traveller:
        # 1. Register as an individual (zh-Hans by default).
        journey.goto("/register/")
        assert page.locator("html").get_attribute("lang") == "zh-Hans"
        journey.shot("register")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.fill("#id_password_again", PASSWORD)
        page.fill("#id_name", "王小明")
        page.fill("#id_birth_date", "1990-05-01")
        page.fill("#id_phone", PHONE)
        page.check("#id_accept_terms")
        page.check("#id_accept_privacy")
        journey.shot("register-filled")
        journey.submit_main_form()
        assert journey.path() == "/verify/phone/"

        # 2. Verify the phone with the code from the SMS outbox.
        messages = read_sms(sms_outbox)
        assert [(m["to"], m["template"]) for m in messages] == [
            ("+86" + PHONE, "verification_code")
        ]
        code = re.search(r"\b(\d{6})\b", messages[0]["text"]).group(1)
        page.fill("#id_code", code)
        journey.shot("verify-phone")
        journey.submit_main_form()
        assert journey.path() == "/"
        member = Member.objects.get(user__username=USERNAME)
        assert member.status == Member.Status.ACTIVE
        assert page.locator(".number").inner_text() == member.number
        journey.shot("member-centre")

        # 3. Sign out, sign in with the password.
        journey.sign_out()
        journey.shot("signed-out")
        journey.sign_in_with_password()
        assert journey.path() == "/"
        journey.shot("signed-in")

        # 4. Turn on two-factor authentication on the security page.
        security = page.locator("nav.tiles a[href*='security']")
        if security.count():
            with page.expect_navigation():
                security.first.click()
        else:
            journey.goto("/accounts/2fa/")
        journey.shot("security")
        activate = page.locator("main a[href*='totp/activate']")
        if activate.count():
            with page.expect_navigation():
                activate.first.click()
        if journey.path().startswith("/accounts/reauthenticate/"):
            # allauth asks for the password again before a security change.
            page.fill("main input[name=password]", PASSWORD)
            journey.shot("reauthenticate")
            journey.submit_main_form()
        secret_field = page.locator("#authenticator_secret, [data-totp-secret]").first
        secret = secret_field.get_attribute("data-totp-secret") or secret_field.input_value()
        assert re.fullmatch(r"[A-Z2-7]{16,}", secret)
        fresh_window(traveller)
        page.fill("main input[name=code]", totp(secret))
        journey.shot("totp-activate")
        journey.submit_main_form()
        assert member.user.authenticator_set.filter(type="totp").count() == 1
        journey.shot("2fa-enabled")

        # 5. Sign out; sign in again with the password and a TOTP code.
        journey.sign_out()
        journey.sign_in_with_password()
        assert "/2fa/authenticate" in journey.path()
        fresh_window(traveller)
        page.fill("main input[name=code]", totp(secret))
        journey.shot("2fa-code")
        journey.submit_main_form()
        assert journey.path() == "/"
        assert page.locator(".number").inner_text() == member.number
        journey.shot("member-centre-after-2fa")


def test_reg_2_refusal_on_a_phone_screen_shows_a_linked_error_summary(
    live_server, browser, screenshot_dir
):
    publish_documents()
    context = browser.new_context(
        locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        page.goto(live_server.url + "/register/enterprise/")
        page.fill("#id_username", "e2e_company")
        page.fill("#id_password", PASSWORD)
        page.fill("#id_password_again", PASSWORD)
        page.fill("#id_company_name", "北京星光影城有限公司")
        page.fill("#id_credit_code", "91110000802100433A")  # wrong check character
        page.fill("#id_contact_name", "李华")
        page.fill("#id_phone", "13712345678")
        page.check("#id_accept_terms")
        page.check("#id_accept_privacy")
        with page.expect_navigation():
            page.locator("main form button[type=submit]").first.click()

        summary = page.locator("#error-summary")
        assert summary.is_visible()
        assert page.evaluate("document.activeElement.id") == "error-summary"
        assert page.locator("#id_credit_code").get_attribute("aria-invalid") == "true"
        assert "id_credit_code_error" in page.locator("#id_credit_code").get_attribute(
            "aria-describedby"
        )
        # No horizontal scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(screenshot_dir / "mobile-register-error.png"), full_page=True)
        summary.locator("a[href='#id_credit_code']").click()
        assert page.evaluate("document.activeElement.id") == "id_credit_code"
        assert Member.objects.count() == 0

        # The language switch shows the same page in English.
        with page.expect_navigation():
            page.locator("header form.lang button[value=en]").click()
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.locator("main h1").inner_text() == "Register"
        page.screenshot(path=str(screenshot_dir / "mobile-register-english.png"), full_page=True)
    finally:
        context.close()
