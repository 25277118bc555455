"""Staff console pages beyond the admin: queues, dashboards."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


@staff_member_required(login_url="/console/admin/login/")
def home(request: HttpRequest) -> HttpResponse:
    return redirect("admin:index")
