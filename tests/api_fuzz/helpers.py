"""What every API answer must look like, and a member with a session to aim requests at."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from patron.core import clock
from patron.core.crypto import blind_index
from patron.members.models import Consent, ConsentDocument, Member, User

PROBLEM = "application/problem+json"
PASSWORD = "quiet amber harbour 42"
LOGIN_PATH = "/api/auth/app/v1/auth/login"


def header(headers: Any, name: str) -> str:
    """A header from a Django response, or from schemathesis' lower-cased list-valued dict."""
    if hasattr(headers, "get") and not isinstance(headers, dict):
        return headers.get(name, "") or ""
    value = headers.get(name.lower()) or headers.get(name) or ""
    return value[0] if isinstance(value, list) else value


def problem_errors(status: int, content_type: str, body: bytes) -> list[str]:
    """Why an answer breaks the contract: never a 500, every error problem+json with a code.

    Returns the list of broken rules (empty when the answer is fine), so a failing test
    says exactly what was wrong.
    """
    broken: list[str] = []
    if status >= 500:
        broken.append(f"status {status}")
    if status < 400:
        return broken
    if not content_type.startswith(PROBLEM):
        broken.append(f"error answered with {content_type!r}, not {PROBLEM}")
        return broken
    try:
        problem = json.loads(body)
    except ValueError:
        return [*broken, "problem body is not JSON"]
    if not isinstance(problem, dict):
        return [*broken, "problem body is not an object"]
    if not isinstance(problem.get("code"), str) or not problem["code"]:
        broken.append("problem has no code")
    if problem.get("status") != status:
        broken.append(f"problem status {problem.get('status')!r} != HTTP status {status}")
    for key in ("title", "detail"):
        if not isinstance(problem.get(key), str):
            broken.append(f"problem has no {key}")
    errors = problem.get("errors")
    if not isinstance(errors, list) or not all(
        isinstance(e, dict) and {"field", "code", "message"} <= e.keys() for e in errors
    ):
        broken.append("problem errors is not a list of {field, code, message}")
    return broken


def consent_documents() -> list[ConsentDocument]:
    return [
        ConsentDocument.objects.create(
            kind=kind, version="1.0", title=kind, body="…", title_en=kind, body_en="…"
        )
        for kind in ("terms", "privacy")
    ]


def active_member(documents: list[ConsentDocument], n: int = 1) -> Member:
    """An active member who accepted the current documents, built straight in the database
    (the registration rules are not what these tests are about)."""
    phone = f"+8613700{n:06d}"
    user = User.objects.create_user(username=f"fuzz{n}", password=PASSWORD)
    member = Member.objects.create(
        user=user,
        number=f"{880000000000 + n}",
        kind=Member.Kind.INDIVIDUAL,
        status=Member.Status.ACTIVE,
        name="Fuzz Member",
        phone=phone,
        phone_index=blind_index(phone, "phone"),
        phone_verified_at=clock.now(),
    )
    for document in documents:
        Consent.objects.create(member=member, document=document, granted=True, channel="api")
    return member


def session_token(member: Member) -> str | None:
    """A headless app session token for the member, or None if sign-in did not complete."""
    response = Client().post(
        LOGIN_PATH,
        json.dumps({"username": member.user.username, "password": PASSWORD}),
        content_type="application/json",
    )
    if response.status_code != 200:
        return None
    return response.json().get("meta", {}).get("session_token")
