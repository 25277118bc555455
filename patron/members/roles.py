"""Staff roles as groups with least privilege (AUTH-6).

Each role gets only the permissions its work needs. Revealing unmasked personal data is a
permission of its own (``members.reveal_personal_data``) and every reveal is audited.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

ROLES: dict[str, list[str]] = {
    "reviewer": ["members.view_member", "members.view_kycsubmission", "members.review_kyc"],
    "service agent": ["members.view_member", "members.view_consent"],
    "risk analyst": ["members.view_member", "members.change_member_status", "core.view_auditevent"],
    "program manager": [
        "members.view_member",
        "members.view_consentdocument",
        "members.add_consentdocument",
        "members.change_consentdocument",
        "loyalty.view_programversion",
        "loyalty.add_programversion",
        "loyalty.view_reward",
        "loyalty.add_reward",
        "loyalty.change_reward",
        "loyalty.view_entry",
        "loyalty.add_entry",
    ],
    "privacy officer": [
        "members.view_member",
        "members.reveal_personal_data",
        "members.view_consent",
        "members.view_consentdocument",
        "core.view_auditevent",
    ],
    "auditor": [
        "core.view_auditevent",
        "members.view_member",
        "loyalty.view_programversion",
        "loyalty.view_reward",
        "loyalty.view_entry",
    ],
    "administrator": [
        "members.view_member",
        "members.change_member_status",
        "members.reveal_personal_data",
        "members.review_kyc",
        "members.view_kycsubmission",
        "members.view_consentdocument",
        "members.add_consentdocument",
        "members.change_consentdocument",
        "api.manage_api_keys",
        "api.view_apikey",
        "core.view_auditevent",
        "notify.manage_webhooks",
        "loyalty.view_programversion",
        "loyalty.add_programversion",
        "loyalty.view_reward",
        "loyalty.add_reward",
        "loyalty.change_reward",
        "loyalty.view_entry",
        "loyalty.add_entry",
    ],
}


def ensure_roles() -> dict[str, Group]:
    """Create or refresh the role groups; safe to run any number of times."""
    groups: dict[str, Group] = {}
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            wanted.extend(
                Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)
        groups[role] = group
    return groups
