"""Pausing blocking from the web: the buttons of templates/dnsengine/_pause.html, and a JSON API.

    POST /api/pause   {"minutes": 5}       pause for 5 minutes (1 to 10080)
    POST /api/pause   {"minutes": null}    pause until resumed
    POST /api/resume                       blocking on again
    GET  /api/pause                        the current state

The API takes a signed-in session or the bearer token, like the rest of /api/
(gloryhole_site.auth.api_auth). Unlike the rest it writes, so a session request
must also pass the CSRF check and belong to a staff user
(gloryhole_site.auth.api_write_refused); the token alone is enough for scripts.
"""

from __future__ import annotations

import json
import logging

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.formats import time_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timezone import localtime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from dnsengine.services.pause import (
    MAX_PAUSE_MINUTES,
    PauseStatus,
    blocking_pause,
    blocking_pause_status,
    blocking_resume,
)
from gloryhole_site.auth import api_auth, api_write_refused, staff_required

logger = logging.getLogger(__name__)


def _describe(status: PauseStatus) -> str:
    if not status.paused:
        return "Blocking is on."
    if status.until is None:
        return "Blocking is paused until you resume it."
    return f"Blocking is paused until {time_format(localtime(status.until), 'H:i:s')}."


def _back(request: HttpRequest) -> HttpResponse:
    """To the page the button was on, if it is one of ours; else the status page."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(reverse("engine-status"))


# --- The buttons ------------------------------------------------------------------------


@require_POST
@staff_required
def pause_view(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("minutes", "").strip()
    try:
        status = blocking_pause(int(raw) if raw else None, by=request.user.get_username())
    except ValueError:
        messages.error(request, f"Cannot pause for {raw!r} minutes: give 1 to {MAX_PAUSE_MINUTES}, or none.")
        return _back(request)
    messages.success(request, _describe(status))
    return _back(request)


@require_POST
@staff_required
def resume_view(request: HttpRequest) -> HttpResponse:
    messages.success(request, _describe(blocking_resume(by=request.user.get_username())))
    return _back(request)


# --- The API ----------------------------------------------------------------------------


def _write_refused(request: HttpRequest) -> JsonResponse | None:
    return api_write_refused(request, "only staff users can pause blocking")


def _who(request: HttpRequest) -> str:
    return request.user.get_username() if request.user.is_authenticated else "API token"


@csrf_exempt  # checked in _write_refused for sessions; a token request has no cookie to forge
@require_http_methods(["GET", "POST"])
@api_auth
def api_pause(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse(blocking_pause_status().as_json())
    refused = _write_refused(request)
    if refused is not None:
        return refused
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the body is not JSON"}, status=400)
    if not isinstance(body, dict) or "minutes" not in body:
        return JsonResponse({"error": 'send {"minutes": N} (1 to 10080) or {"minutes": null} (until resumed)'},
                            status=400)  # fmt: skip
    minutes = body["minutes"]
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int)):
        return JsonResponse({"error": "minutes must be a whole number or null"}, status=400)
    try:
        status = blocking_pause(minutes, by=_who(request))
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(status.as_json())


@csrf_exempt
@require_POST
@api_auth
def api_resume(request: HttpRequest) -> HttpResponse:
    refused = _write_refused(request)
    if refused is not None:
        return refused
    return JsonResponse(blocking_resume(by=_who(request)).as_json())
