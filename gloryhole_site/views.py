"""The web process's own /metrics (django-prometheus), behind a staff session or the API token."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView

from gloryhole_site.auth import bearer_token_ok, unauthorized
from gloryhole_site.security import address_in, client_address, parse_address


def metrics(request: HttpRequest) -> HttpResponse:
    """Request and database metrics of this web process, for Prometheus.

    Prometheus sends the token with `authorization: {credentials: ...}` in its scrape
    config; GLORYHOLE_WEB_METRICS_OPEN_TO lets a scraper on a private network in without.
    Request counts by view and status tell an outsider what the site is and how it is used.
    """
    user = request.user
    if (
        (user.is_authenticated and user.is_staff)
        or bearer_token_ok(request)
        or address_in(parse_address(client_address(request) or ""), settings.GLORYHOLE_WEB_METRICS_OPEN_TO)
    ):
        return ExportToDjangoView(request)
    if user.is_authenticated:
        return JsonResponse({"error": "staff only"}, status=403)
    return unauthorized("authentication required (staff session or Bearer token)")
