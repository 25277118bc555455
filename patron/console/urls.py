from django.urls import path

from patron.console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("members/", views.members, name="members"),
    path("members/<str:number>/", views.member_detail, name="member"),
    path("members/<str:number>/reveal/", views.member_reveal, name="member_reveal"),
    path("documents/", views.documents, name="documents"),
    path("documents/new/", views.document_new, name="document_new"),
    path("api-keys/", views.keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.key_revoke, name="api_key_revoke"),
    path("audit/", views.audit_trail, name="audit"),
    path("audit/verify/", views.audit_verify, name="audit_verify"),
]

# --- real-name verification review (KYC-3) -------------------------------------------------
from patron.console import kyc_views  # noqa: E402

urlpatterns += [
    path("kyc/", kyc_views.queue, name="kyc_queue"),
    path("kyc/<int:pk>/", kyc_views.detail, name="kyc_detail"),
    path("kyc/<int:pk>/reveal/", kyc_views.reveal, name="kyc_reveal"),
    path("kyc/<int:pk>/decide/", kyc_views.decide, name="kyc_decide"),
    path("kyc/<int:pk>/image/<str:side>/", kyc_views.image, name="kyc_image"),
    path("kyc/member/<str:number>/", kyc_views.member_history, name="kyc_member_history"),
]

# --- platform webhooks (NOTE-2) ------------------------------------------------------------
from patron.console import webhook_views  # noqa: E402

urlpatterns += [
    path("webhooks/", webhook_views.webhooks_page, name="webhooks"),
    path("webhooks/<int:pk>/", webhook_views.webhook_detail, name="webhook"),
    path(
        "webhooks/<int:pk>/deactivate/", webhook_views.webhook_deactivate, name="webhook_deactivate"
    ),
    path("webhooks/<int:pk>/test/", webhook_views.webhook_test, name="webhook_test"),
]

# --- loyalty program: rules, rewards catalog, member ledgers, liability (issue 3) ----------
from patron.console import loyalty_views  # noqa: E402

urlpatterns += [
    path("loyalty/", loyalty_views.loyalty_home, name="loyalty_home"),
    path("loyalty/program/", loyalty_views.program_rules, name="loyalty_program"),
    path(
        "loyalty/program/<int:version>/",
        loyalty_views.program_version,
        name="loyalty_program_version",
    ),
    path("loyalty/rewards/", loyalty_views.rewards, name="loyalty_rewards"),
    path("loyalty/rewards/new/", loyalty_views.reward_new, name="loyalty_reward_new"),
    path("loyalty/rewards/<slug:code>/edit/", loyalty_views.reward_edit, name="loyalty_reward"),
    path(
        "loyalty/rewards/<slug:code>/stock/",
        loyalty_views.reward_stock,
        name="loyalty_reward_stock",
    ),
    path("loyalty/members/", loyalty_views.member_lookup, name="loyalty_member_lookup"),
    path("loyalty/members/<str:number>/", loyalty_views.member_ledger, name="loyalty_member"),
    path(
        "loyalty/members/<str:number>/adjust/",
        loyalty_views.member_adjust,
        name="loyalty_member_adjust",
    ),
    path(
        "loyalty/members/<str:number>/extend/",
        loyalty_views.member_extend,
        name="loyalty_member_extend",
    ),
    path("loyalty/liability/", loyalty_views.liability, name="loyalty_liability"),
]
