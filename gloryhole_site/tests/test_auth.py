"""gloryhole_site.auth, called directly: who passes which check, and what the others get."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse

from gloryhole_site.auth import api_auth, api_write_refused, bearer_token_ok, staff_required


def ok(request):
    return HttpResponse("ok")


@pytest.fixture
def token(settings) -> str:
    settings.GLORYHOLE_API_TOKEN = "s3cret"
    return "s3cret"


@pytest.mark.parametrize(
    ("header", "expected"),
    [("Bearer s3cret", True), ("bearer s3cret", True), ("Bearer wrong", False), ("Basic s3cret", False), ("", False)],
)
def test_the_bearer_token_must_match_the_setting(rf, token, header, expected):
    assert bearer_token_ok(rf.get("/", HTTP_AUTHORIZATION=header)) is expected


def test_no_token_passes_while_none_is_configured(rf, settings):
    settings.GLORYHOLE_API_TOKEN = ""
    assert not bearer_token_ok(rf.get("/", HTTP_AUTHORIZATION="Bearer "))


def test_the_api_answers_an_anonymous_request_with_a_401_challenge(rf, token):
    request = rf.get("/api/x")
    request.user = AnonymousUser()

    response = api_auth(ok)(request)

    assert response.status_code == 401 and response["WWW-Authenticate"] == 'Bearer realm="gloryhole"'
    request = rf.get("/api/x", HTTP_AUTHORIZATION="Bearer s3cret")
    request.user = AnonymousUser()
    assert api_auth(ok)(request).status_code == 200


def test_staff_required_sends_the_anonymous_to_login_and_refuses_a_viewer(rf, viewer_user, staff_user):
    request = rf.post("/x")
    request.user = AnonymousUser()
    assert staff_required(ok)(request).status_code == 302

    request.user = viewer_user
    with pytest.raises(PermissionDenied):
        staff_required(ok)(request)

    request.user = staff_user
    assert staff_required(ok)(request).status_code == 200


def test_a_writing_api_refuses_a_viewer_session_and_lets_the_token_through(rf, viewer_user):
    request = rf.post("/api/x")
    request.user = viewer_user
    refused = api_write_refused(request, "only staff")
    assert refused.status_code == 403 and b"only staff" in refused.content

    request.user = AnonymousUser()  # api_auth passed it: the token was right
    assert api_write_refused(request, "only staff") is None
