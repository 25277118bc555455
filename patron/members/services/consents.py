"""Consents (REG-5, PRIV-1, PRIV-9): grants and withdrawals, append-only.

Each decision is a new ``Consent`` row; the latest row per document is the member's current
decision and the history is the record regulators ask for. Only the current version of a
document can be granted or withdrawn: accepting an old version would not lift the PRIV-9
gate, and withdrawing one would change nothing. The marketing opt-in flag on the member
follows the latest decision on the current marketing document.
"""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from patron.core import audit, clock
from patron.core.exceptions import Conflict
from patron.members import selectors
from patron.members.models import Consent, ConsentDocument, Member
from patron.members.services._common import control_character_errors, failed, refuse


def record_consent(
    *,
    member: Member,
    document: str,
    version: str,
    granted: bool,
    channel: str,
    actor: audit.Actor,
) -> Consent:
    """Append one grant or withdrawal of ``document@version`` (which must be current)."""
    errors = control_character_errors({"document": document, "version": version})
    if errors:
        raise failed(errors)
    doc = ConsentDocument.objects.filter(kind=document, version=version).first()
    if doc is None:
        raise refuse("document", "unknown_document", _("There is no such document version."))
    current = selectors.current_document(document)
    if current is None or current.pk != doc.pk:
        raise refuse(
            "version",
            "consent_version_mismatch",
            _("The current version is %(version)s.")
            % {"version": current.version if current else "-"},
        )
    with transaction.atomic():
        member = Member.objects.select_for_update().get(pk=member.pk)
        if member.status == Member.Status.CANCELLED:
            raise Conflict(
                _("The member is cancelled; cancellation is final."), code="member_cancelled"
            )
        consent = Consent.objects.create(
            member=member,
            document=doc,
            granted=granted,
            channel=channel,
            recorded_at=clock.now(),
        )
        if doc.kind == ConsentDocument.Kind.MARKETING and member.marketing_opt_in != granted:
            member.marketing_opt_in = granted
            member.save(update_fields=["marketing_opt_in", "updated_at"])
        audit.record(
            "consent.granted" if granted else "consent.withdrawn",
            actor=actor,
            subject=member,
            details={"document_id": doc.pk, "consent_id": consent.pk},
        )
    return consent


def accept_current(
    *,
    member: Member,
    channel: str,
    actor: audit.Actor,
    documents: list[ConsentDocument] | None = None,
) -> list[Consent]:
    """Accept, all or none, the current required documents the member is missing.

    ``documents`` names exactly the versions a page showed the member (the sign-in gate), so
    a version published between showing and answering is refused, not silently accepted.
    """
    with transaction.atomic():
        return [
            record_consent(
                member=member,
                document=doc.kind,
                version=doc.version,
                granted=True,
                channel=channel,
                actor=actor,
            )
            for doc in (selectors.missing_consents(member) if documents is None else documents)
        ]
