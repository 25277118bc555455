"""Portal routes. Other modules append their own pages at the end (one block each)."""

from django.urls import path

from patron.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("register/", views.register, name="register"),
    path("register/<str:kind>/", views.register, name="register_kind"),
    path("verify/<str:channel>/", views.verify, name="verify"),
    path("verify/<str:channel>/resend/", views.resend, name="resend"),
    path("profile/", views.profile, name="profile"),
    path("consents/", views.consents, name="consents"),
    path("documents/<str:kind>/", views.document, name="document"),
    path("documents/<str:kind>/<str:version>/", views.document, name="document_version"),
]

# --- sign-in and security (auth: QR sign-in, 2FA and sessions, consent interstitial) -------
from patron.portal import auth_views  # noqa: E402

urlpatterns += [
    path("qr/login/", auth_views.qr_login, name="qr_login"),
    path("qr/login/status/", auth_views.qr_login_status, name="qr_login_status"),
    path("qr/login/complete/", auth_views.qr_login_complete, name="qr_login_complete"),
    path("qr/approve/<str:secret>/", auth_views.qr_approve, name="qr_approve"),
    path("security/", auth_views.security, name="security"),
    path("security/sessions/", auth_views.sessions, name="sessions"),
    path("security/sessions/revoke/", auth_views.revoke_sessions, name="revoke_sessions"),
    path("consents/accept/", auth_views.consent_required, name="consent_required"),
    path("password/reset/", auth_views.password_reset, name="password_reset"),
    path(
        "password/reset/confirm/",
        auth_views.password_reset_confirm,
        name="password_reset_confirm",
    ),
]

# --- real-name verification (KYC-1..5) -----------------------------------------------------
from patron.portal import kyc_views  # noqa: E402

urlpatterns += [
    path("kyc/", kyc_views.kyc, name="kyc"),
]

# --- loyalty: tier, benefits, points, rewards, coupons (issue 3) ---------------------------
from patron.portal import loyalty_views  # noqa: E402

urlpatterns += [
    path("loyalty/", loyalty_views.tier, name="loyalty"),
    path("loyalty/points/", loyalty_views.points, name="loyalty_points"),
    path("loyalty/rewards/", loyalty_views.rewards, name="loyalty_rewards"),
    path("loyalty/rewards/<slug:code>/redeem/", loyalty_views.redeem, name="loyalty_redeem"),
    path("loyalty/coupons/", loyalty_views.coupons, name="loyalty_coupons"),
]
