"""Who may see and change what: the one place every page, API and /metrics view checks it.

- Pages: a signed-in user reads (`login_required`); `staff_required` guards
  every page action that changes the DNS configuration.
- The JSON API under /api/ and /metrics: a signed-in session, or scripts'
  `Authorization: Bearer <GLORYHOLE_API_TOKEN>` (token access is off while that
  setting is empty), answered with 401 JSON rather than a login redirect.
  `api_write_refused` adds what a writing endpoint needs from a session: staff,
  and the CSRF check.
"""

from __future__ import annotations

import hmac
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware


def staff_required(view):
    """Login first (redirect), then staff (403): a signed-in viewer must not loop back to the login page."""

    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("only staff users can change the DNS configuration")
        return view(request, *args, **kwargs)

    return wrapper


def bearer_token_ok(request: HttpRequest) -> bool:
    expected = settings.GLORYHOLE_API_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def unauthorized(message: str) -> JsonResponse:
    """401 in JSON with the challenge a script's HTTP client expects."""
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="gloryhole"'
    return response


def api_auth(view):
    """A session or the bearer token; otherwise 401 in JSON, never a redirect to a login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.user.is_authenticated or bearer_token_ok(request):
            return view(request, *args, **kwargs)
        return unauthorized("authentication required (session or Bearer token)")

    return wrapper


def api_write_refused(request: HttpRequest, staff_only: str) -> JsonResponse | None:
    """For a writing API view behind `api_auth`: the 403 to send, or None to go on.

    A session must be staff (else 403 with `staff_only` as the error) and pass
    the CSRF check; a bearer-token request (no session) passes, having no
    cookie to forge.
    """
    if not request.user.is_authenticated:
        return None  # api_auth let it through: the token was right
    if not request.user.is_staff:
        return JsonResponse({"error": staff_only}, status=403)
    if CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {}) is not None:
        return JsonResponse({"error": "CSRF check failed: send the X-CSRFToken header"}, status=403)
    return None
