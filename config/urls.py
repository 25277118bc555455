from django.contrib import admin
from django.urls import include, path

from patron.api.api import api
from patron.core import views as core_views

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", core_views.metrics, name="metrics"),
    path("api/v1/", api.urls),
    path("api/auth/", include("allauth.headless.urls")),
    path("accounts/", include("allauth.urls")),
    path("console/admin/", admin.site.urls),
    path("console/", include("patron.console.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("patron.portal.urls")),
]
