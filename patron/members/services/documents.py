"""Publishing consent documents (REG-5, PRIV-9).

Documents are never edited in place: a change is a new version. The newest version already
published is the current one (``selectors.current_documents``); once a new required
version is current, every member lacks it, so the portal interstitial and the API's
``consent_required`` ask them to accept it at their next sign-in.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from patron.core import audit, clock
from patron.core.exceptions import Conflict, FieldError, ValidationFailed
from patron.members.models import ConsentDocument


def publish_document_version(
    *,
    kind: str,
    version: str,
    title: str,
    body: str,
    title_en: str = "",
    body_en: str = "",
    required: bool = True,
    published_at: dt.datetime | None = None,
    actor: audit.Actor,
) -> ConsentDocument:
    """Create ``kind@version``; it becomes current at ``published_at`` (default: now)."""
    version = version.strip()
    errors: list[FieldError] = []
    if kind not in ConsentDocument.Kind.values:
        errors.append(FieldError("kind", "unknown_kind", _("Choose a document kind.")))
    if not version:
        errors.append(FieldError("version", "required", _("A version is required.")))
    if not title.strip():
        errors.append(FieldError("title", "required", _("A title is required.")))
    if not body.strip():
        errors.append(FieldError("body", "required", _("The text is required.")))
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        if ConsentDocument.objects.filter(kind=kind, version=version).exists():
            raise Conflict(
                _("This version of the document already exists."), code="document_version_taken"
            )
        document = ConsentDocument.objects.create(
            kind=kind,
            version=version,
            title=title.strip(),
            body=body.strip(),
            title_en=title_en.strip(),
            body_en=body_en.strip(),
            required=required,
            published_at=published_at or clock.now(),
        )
        audit.record(
            "consent_document.published",
            actor=actor,
            subject=document,
            details={"kind": kind, "version": version, "required": required},
        )
    return document
