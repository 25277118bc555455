"""Portal forms: they parse what a member typed; the member services decide what is valid.

The forms check only what a browser form must (required boxes, two password entries that
agree, a date that parses). Every business rule (age, ID number and credit code checks,
uniqueness, password policy, consent versions) lives in ``patron.members`` and comes back
as ``ValidationFailed`` / ``Conflict`` field errors, which ``apply_service_errors`` places
next to the matching field, so the portal refuses exactly what the API refuses.
"""

from __future__ import annotations

from collections.abc import Iterable

from django import forms
from django.conf import settings
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from patron.core.exceptions import PatronError, RateLimited

KIND_INDIVIDUAL = "individual"
KIND_ENTERPRISE = "enterprise"

# Service refusals carry a stable code and an English message. The portal speaks the
# member's language, so the codes it knows get a translated sentence here; an unknown code
# falls back to the service's own message (run through gettext in case it is catalogued).
ERROR_MESSAGES = {
    "required": _("This field is required."),
    "invalid_username": _("3 to 32 characters: letters, digits, underscore or hyphen."),
    "invalid_phone": _("This is not a valid phone number."),
    "invalid_email": _("This is not a valid email address."),
    "minor": _("Members must be at least %(age)s years old."),
    "birth_date_in_future": _("The birth date is in the future."),
    "invalid_id_number": _("The ID number is not a valid resident ID number."),
    "id_birth_date_mismatch": _(
        "The birth date in the ID number does not match the birth date given."
    ),
    "invalid_credit_code": _("The unified social credit code is not valid."),
    "unknown_referrer": _("No member has this number."),
    "consent_required": _("You must accept the service agreement and the privacy policy."),
    "consent_version_mismatch": _(
        "A document has been updated since you opened this page; read and accept the "
        "current version."
    ),
    "no_marketing_document": _("No marketing terms are published."),
    "username_taken": _("This username is taken."),
    "phone_taken": _("This phone number is already registered."),
    "email_taken": _("This email address is already registered."),
    "credit_code_taken": _("An enterprise with this credit code is already registered."),
    "code_invalid": _("The code is not correct."),
    "code_used": _("This code was already used."),
    "code_locked": _("Too many wrong tries; ask for a new code."),
    "code_expired": _("The code has expired; ask for a new one."),
    "no_address": _("There is no address to send a code to."),
    "member_cancelled": _("This membership is cancelled."),
}


def wait_message(retry_after: int) -> str:
    """REG-6 throttles: how long until another code may be sent, in words."""
    if retry_after <= 120:
        return gettext("Please wait %(seconds)s seconds before asking for another code.") % {
            "seconds": retry_after
        }
    return gettext("Too many codes were sent; try again in about %(minutes)s minutes.") % {
        "minutes": (retry_after + 59) // 60
    }


def translate_error(code: str, message: str) -> str:
    """The member-facing sentence for a service error code, in the active language."""
    template = ERROR_MESSAGES.get(code)
    if template is None:
        return gettext(str(message)) if message else gettext("Something went wrong.")
    return str(template) % {"age": settings.PATRON_MINIMUM_AGE}


class PortalForm(forms.Form):
    """Base for portal forms: Django 5.2 already renders ``aria-invalid`` and links each
    input to its help text and error list (``aria-describedby``); we add autocomplete hints
    and a stable error-list CSS class."""

    error_css_class = "has-error"
    required_css_class = "required"

    #: form field name -> service field names that land on it (see apply_service_errors)
    service_field_map: dict[str, str] = {}

    def apply_service_errors(self, error: PatronError, *, only_new_fields: bool = False) -> None:
        """Place a service refusal on the form: each FieldError next to its field, the rest
        (and fields this form does not show) as a form-level error.

        ``only_new_fields`` adds errors only to fields the form has not already refused
        (an empty value the form refused would otherwise be reported twice).
        """
        if only_new_fields:
            already = set(self.errors)
            for item in error.errors:
                # Mapped fields (the consent boxes) are the form's own required checks.
                if item.field in self.service_field_map or item.field not in self.fields:
                    continue
                if item.field not in already and item.field not in self.errors:
                    self.add_error(item.field, translate_error(item.code, item.message))
            return
        if isinstance(error, RateLimited):
            self.add_error(None, wait_message(error.retry_after))
            return
        placed = False
        seen: set[tuple[str, str]] = set()
        for item in error.errors:
            target = self.service_field_map.get(item.field, item.field)
            message = translate_error(item.code, item.message)
            if (target, message) in seen:  # e.g. one "consent required" per document
                continue
            seen.add((target, message))
            if target in self.fields:
                self.add_error(target, message)
            else:
                self.add_error(None, message)
            placed = True
        if not placed:
            self.add_error(None, translate_error(error.code, error.message))


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, attrs=None):
        super().__init__(attrs=attrs, format="%Y-%m-%d")


class NewPasswordForm(PortalForm):
    """A new password typed twice (the policy itself is the service's)."""

    password = forms.CharField(
        label=_("Password"),
        strip=False,
        help_text=_("At least 8 characters; avoid common passwords and your own details."),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_again = forms.CharField(
        label=_("Password (again)"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        data = super().clean()
        first, second = data.get("password"), data.get("password_again")
        if first and second and first != second:
            self.add_error("password_again", _("The two passwords do not match."))
        return data


class RegistrationForm(NewPasswordForm):
    """REG-1, REG-2, REG-5: one form for both kinds; ``kind`` picks the fields shown.

    The consent boxes are built from the current documents so the versions the member saw
    are exactly the versions recorded.
    """

    service_field_map = {"accepted": "accept_terms"}
    field_order = ["username", "password", "password_again"]

    username = forms.CharField(
        label=_("Username"),
        max_length=32,
        help_text=_("3 to 32 letters, digits or underscores; used to sign in."),
        widget=forms.TextInput(attrs={"autocomplete": "username", "autocapitalize": "none"}),
    )
    # individual
    name = forms.CharField(
        label=_("Full name"),
        max_length=100,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    birth_date = forms.DateField(
        label=_("Date of birth"),
        required=False,
        help_text=_("Needed unless you give your ID number."),
        widget=DateInput(attrs={"autocomplete": "bday"}),
    )
    id_number = forms.CharField(
        label=_("Resident ID number (optional)"),
        max_length=18,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )
    # enterprise
    company_name = forms.CharField(
        label=_("Company name"),
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    credit_code = forms.CharField(
        label=_("Unified social credit code"),
        max_length=18,
        help_text=_("18 characters, as printed on the business licence."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )
    contact_name = forms.CharField(
        label=_("Contact person"),
        max_length=100,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    # both
    phone = forms.CharField(
        label=_("Mobile phone"),
        max_length=32,
        help_text=_("We send a 6-digit code to this number."),
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )
    email = forms.CharField(
        label=_("Email (optional)"),
        max_length=254,
        required=False,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    address = forms.CharField(
        label=_("Address (optional)"),
        max_length=300,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "street-address"}),
    )
    referrer = forms.CharField(
        label=_("Referrer's member number (optional)"),
        max_length=12,
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )
    marketing_opt_in = forms.BooleanField(
        label=_("Send me offers and news (optional; you can withdraw at any time)"),
        required=False,
    )

    INDIVIDUAL_ONLY = ("name", "birth_date", "id_number")
    ENTERPRISE_ONLY = ("company_name", "credit_code", "contact_name")

    def __init__(self, *args, kind: str, documents: Iterable, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        if "birth_date" in self.fields:
            self.fields["birth_date"].help_text = _(
                "Members must be at least %(age)s years old. Needed unless you give your ID number."
            ) % {"age": settings.PATRON_MINIMUM_AGE}
        drop = self.ENTERPRISE_ONLY if kind == KIND_INDIVIDUAL else self.INDIVIDUAL_ONLY
        for name in drop:
            del self.fields[name]
        # One required box per current terms / privacy document, named by kind, so the
        # service's "accepted" error and the template can find them.
        self.documents = {doc.kind: doc for doc in documents if doc.kind in ("terms", "privacy")}
        labels = {
            "terms": _("I have read and accept the service agreement (version %(version)s)"),
            "privacy": _("I have read and accept the privacy policy (version %(version)s)"),
        }
        for doc_kind in ("terms", "privacy"):
            doc = self.documents.get(doc_kind)
            if doc is None:
                continue
            self.fields[f"accept_{doc_kind}"] = forms.BooleanField(
                label=labels[doc_kind] % {"version": doc.version},
                required=True,
                error_messages={"required": _("You must accept this document to register.")},
            )
        # the marketing box goes last, after the required ones
        self.fields["marketing_opt_in"] = self.fields.pop("marketing_opt_in")
        if "accept_terms" not in self.fields:
            self.service_field_map = {"accepted": "__all__"}

    @property
    def accepted(self) -> list[str]:
        return [
            f"{doc.kind}@{doc.version}"
            for kind, doc in self.documents.items()
            if self.cleaned_data.get(f"accept_{kind}")
        ]

    def consent_fields(self):
        return [self[name] for name in ("accept_terms", "accept_privacy") if name in self.fields]


class CodeForm(PortalForm):
    """A 6-digit verification code (REG-6)."""

    code = forms.RegexField(
        label=_("Verification code"),
        regex=r"^\s*\d{6}\s*$",
        max_length=12,
        error_messages={"invalid": _("Enter the 6 digits from the message.")},
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": r"\d{6}",
                "maxlength": "6",
            }
        ),
    )

    def clean_code(self) -> str:
        return self.cleaned_data["code"].strip()


class PasswordResetRequestForm(PortalForm):
    """The phone a forgotten password's reset code goes to."""

    phone = forms.CharField(
        label=_("Phone number"),
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )


class PasswordResetForm(CodeForm, NewPasswordForm):
    """The reset code and the new password, typed twice."""

    field_order = ["code", "password", "password_again"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["password"].label = _("New password")
        self.fields["password_again"].label = _("New password again")


class ProfileForm(PortalForm):
    """REG-8: the member's own details. A changed phone or email is only proposed here;
    the service sends a code to the new address and applies it once confirmed."""

    name = forms.CharField(
        label=_("Full name"),
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    contact_name = forms.CharField(
        label=_("Contact person"),
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    address = forms.CharField(
        label=_("Address"),
        max_length=300,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "street-address"}),
    )
    phone = forms.CharField(
        label=_("Mobile phone"),
        max_length=32,
        help_text=_("A new number is used only after you confirm the code we send to it."),
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )
    email = forms.CharField(
        label=_("Email"),
        max_length=254,
        required=False,
        help_text=_("A new address is used only after you confirm the code we send to it."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    def __init__(self, *args, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["name" if kind == KIND_ENTERPRISE else "contact_name"]
