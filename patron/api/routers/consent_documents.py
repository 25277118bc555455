"""Consent documents: what a member must accept, in its current versions (REG-5, PRIV-9)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from patron.api.auth import ApiKeyAuth
from patron.api.schemas.common import problems
from patron.api.schemas.members import ConsentDocumentOut
from patron.members import selectors
from patron.members.models import ConsentDocument

router = Router(tags=["consents"])


def document_out(doc: ConsentDocument) -> dict:
    return {
        "kind": doc.kind,
        "version": doc.version,
        "required": doc.required,
        "published_at": doc.published_at,
        "accept_as": f"{doc.kind}@{doc.version}",
        "texts": {
            "zh-hans": {"title": doc.title, "body": doc.body},
            "en": {"title": doc.title_en or doc.title, "body": doc.body_en or doc.body},
        },
    }


@router.get(
    "/consent-documents",
    auth=ApiKeyAuth(),
    response={200: list[ConsentDocumentOut], **problems(401)},
    summary="The current consent documents",
    description=(
        "The current version of each document, in Chinese and English. Show the required "
        "ones (`required: true`) at registration and send their `accept_as` values in "
        "`accepted`. Any valid API key."
    ),
    operation_id="list_consent_documents",
)
def list_documents(request: HttpRequest):
    return [document_out(doc) for doc in selectors.current_documents()]
