"""The engine status page and /api/status: one card per engine, from its EngineStatus heartbeat row."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from dnsengine.selectors import ENGINE_DOWN_AFTER_SECONDS, engine_status_list
from gloryhole_site.auth import api_auth


def status_refresh_ms() -> int:
    return int(settings.GLORYHOLE_STATUS_REFRESH_SECONDS * 1000)


@require_GET
@login_required
def engine_status(request: HttpRequest) -> HttpResponse:
    engines = engine_status_list(request.get_host(), settings.GLORYHOLE_METRICS_PORT)
    return render(
        request,
        "dnsengine/status.html",
        {
            "engines": engines,
            "refresh_ms": status_refresh_ms(),
            "down_after": ENGINE_DOWN_AFTER_SECONDS,
        },
    )


@require_GET
@api_auth
def api_status(request: HttpRequest) -> HttpResponse:
    engines = engine_status_list(request.get_host(), settings.GLORYHOLE_METRICS_PORT)
    return JsonResponse(
        {
            "now": timezone.now().isoformat(),
            "down_after_seconds": ENGINE_DOWN_AFTER_SECONDS,
            "engines": [e.as_json() for e in engines],
        }
    )
