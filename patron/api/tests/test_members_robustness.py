"""No input makes the members endpoints answer 500 (section 2: catch-all tests)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patron.members.tests.members_helpers import documents  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("documents")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "kind",
    "username",
    "password",
    "phone",
    "email",
    "name",
    "birth_date",
    "id_number",
    "address",
    "company_name",
    "credit_code",
    "contact_name",
    "referrer",
    "accepted",
    "marketing_opt_in",
    "language",
    "client_ip",
    "status",
    "reason",
    "until",
    "code",
    "provider",
    "token",
    "last4",
    "exp_month",
    "exp_year",
    "document",
    "version",
    "granted",
]
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8),
)
PATHS = [
    ("post", "/api/v1/members"),
    ("patch", "/api/v1/members/{number}"),
    ("post", "/api/v1/members/{number}/verifications/phone"),
    ("post", "/api/v1/members/{number}/verifications/email/confirm"),
    ("post", "/api/v1/members/{number}/status"),
    ("post", "/api/v1/members/{number}/payment-methods"),
    ("post", "/api/v1/members/{number}/consents"),
]


@pytest.fixture
def number(platform) -> str:
    response = platform.post_json(
        "/api/v1/members",
        {
            "kind": "individual",
            "username": "robust",
            "password": "violet tiger lantern",
            "phone": "13800138000",
            "name": "王小明",
            "birth_date": "2000-01-01",
            "accepted": ["terms@1.0", "privacy@1.0"],
        },
    )
    assert response.status_code == 201
    return response.json()["number"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=bodies, target=st.sampled_from(PATHS), raw=st.booleans())
def test_api_members_endpoints_never_answer_500(platform, number, payload, target, raw):
    method, path = target
    url = path.format(number=number)
    data = json.dumps(payload) if not raw else json.dumps(payload)[:-1] or "{"
    send = platform.post if method == "post" else platform.patch
    response = send(url, data, content_type="application/json")
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("post", "/api/v1/members", {"kind": "individual", "company_name": "a\u0000b"}),
        (
            "post",
            "/api/v1/members",
            {
                "kind": "enterprise",
                "username": "x",
                "password": "y",
                "phone": "1",
                "company_name": "A\u0000",
            },
        ),
        (
            "post",
            "/api/v1/members",
            {
                "kind": "x",
                "username": "x",
                "password": "y",
                "phone": "1",
                "referrer": "\u0000",
                "accepted": ["terms@\u0000"],
            },
        ),
        ("patch", "/api/v1/members/{number}", {"language": "\u0000", "address": "\u0000"}),
        ("post", "/api/v1/members/{number}/status", {"status": "frozen", "reason": "a\u0000"}),
        (
            "post",
            "/api/v1/members/{number}/status",
            {"status": "frozen", "reason": "naive", "until": "2099-01-01T00:00:00"},
        ),
        (
            "post",
            "/api/v1/members/{number}/payment-methods",
            {"provider": "alipay", "token": "t", "brand": "\u0000"},
        ),
        (
            "post",
            "/api/v1/members/{number}/consents",
            {"document": "terms\u0000", "version": "1.0", "granted": True},
        ),
        ("post", "/api/v1/members/{number}/verifications/%00", {}),
    ],
)
def test_api_nul_characters_and_naive_times_never_answer_500(
    platform, number, method, path, payload
):
    send = platform.post_json if method == "post" else platform.patch_json
    response = send(path.format(number=number), payload)
    assert response.status_code < 500, response.content
    if response.status_code == 422 and "\\u0000" in json.dumps(payload):
        assert response.json()["errors"][0]["code"] in ("invalid_characters", "invalid_channel")


@pytest.mark.parametrize(
    "query",
    ["phone=%00", "email=%FF%FE", "credit_code=" + "9" * 500, "phone=" + "1" * 5000, "phone=+"],
)
def test_api_member_lookup_never_answers_500(platform, query):
    response = platform.get(f"/api/v1/members?{query}")
    assert response.status_code in (404, 422)


@pytest.mark.parametrize("number", ["x" * 300, "%00", "1" * 12, "-1"])
def test_api_member_paths_never_answer_500(platform, number):
    assert platform.get(f"/api/v1/members/{number}").status_code == 404
