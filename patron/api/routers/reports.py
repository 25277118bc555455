"""Loyalty API: reports (issue 3, PTS-8). Figures only: no personal data leaves here."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router

from patron.api.auth import ApiKeyAuth
from patron.api.schemas.common import problems
from patron.api.schemas.reports import LiabilityOut, LiabilityQuery
from patron.loyalty import reports

router = Router(tags=["reports"])

READ = ApiKeyAuth("reports:read")


@router.get(
    "/reports/points-liability",
    auth=READ,
    response={200: LiabilityOut, **problems(401, 403, 422)},
    summary="Outstanding points as a liability",
    description=(
        "Available, pending and owed (debt) points with their value at the program's point "
        "value (`points_per_cny` points = 1 CNY), the available points by the month of their "
        "last usable day, and breakage (points expired so far). `as_of` reports for the end "
        "of a past day from the ledger's history. Scope `reports:read`."
    ),
    operation_id="points_liability",
)
def points_liability(request: HttpRequest, query: Query[LiabilityQuery]):
    return reports.points_liability(query.as_of)
