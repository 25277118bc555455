"""Console forms: they only shape input; the services decide and refuse."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from patron.api.keys import SCOPES
from patron.members.models import ConsentDocument, Member
from patron.members.services.reveal import REASON_CATEGORIES


class MemberSearchForm(forms.Form):
    q = forms.CharField(
        label=_("Member number, phone or email"),
        required=False,
        max_length=254,
        help_text=_(
            "Exact match. Personal data is stored encrypted, so partial search is not possible."
        ),
    )
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("Any")), *Member.Status.choices]
    )
    kind = forms.ChoiceField(
        label=_("Kind"), required=False, choices=[("", _("Any")), *Member.Kind.choices]
    )


class RevealForm(forms.Form):
    category = forms.ChoiceField(
        label=_("Reason category"), choices=list(REASON_CATEGORIES.items())
    )
    reason = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,  # the service refuses a missing reason, with the stable code
        help_text=_("Recorded in the audit trail (its length and category, not its text)."),
    )


class DocumentForm(forms.Form):
    kind = forms.ChoiceField(label=_("Document"), choices=ConsentDocument.Kind.choices)
    version = forms.CharField(label=_("Version"), max_length=32)
    title = forms.CharField(label=_("Title (Chinese)"), max_length=200)
    body = forms.CharField(label=_("Text (Chinese)"), widget=forms.Textarea(attrs={"rows": 8}))
    title_en = forms.CharField(label=_("Title (English)"), max_length=200, required=False)
    body_en = forms.CharField(
        label=_("Text (English)"), widget=forms.Textarea(attrs={"rows": 8}), required=False
    )
    required = forms.BooleanField(
        label=_("Members must accept it"),
        required=False,
        initial=True,
        help_text=_("A new required version is asked for at every member's next sign-in."),
    )
    published_at = forms.DateTimeField(
        label=_("Takes effect at"),
        required=False,
        help_text=_("Leave empty to publish now. Format: 2026-12-01 00:00"),
    )


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Platform name"), max_length=100)
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"),
        choices=[(scope, f"{scope}: {text}") for scope, text in SCOPES.items()],
        widget=forms.CheckboxSelectMultiple,
    )


class AuditFilterForm(forms.Form):
    action = forms.CharField(label=_("Action"), required=False, max_length=64)
    subject_type = forms.CharField(label=_("Subject type"), required=False, max_length=32)
    subject_id = forms.CharField(label=_("Subject id"), required=False, max_length=64)
