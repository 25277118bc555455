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
