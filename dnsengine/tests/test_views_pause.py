"""Pausing blocking from the web: the buttons of the pause partial, and /api/pause, /api/resume."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client as WebClient
from django.urls import reverse

from dnsengine.services.pause import blocking_pause, blocking_pause_status


@pytest.fixture
def staff(db):
    return User.objects.create_user("staff", password="pw", is_staff=True)


@pytest.fixture
def viewer(db):
    return User.objects.create_user("viewer", password="pw")


def test_the_buttons_pause_and_resume_and_come_back_to_the_page(web, staff):
    web.force_login(staff)

    response = web.post(reverse("dnsengine-pause"), {"minutes": "60", "next": "/blocklists/"})

    assert response.status_code == 302 and response["Location"] == "/blocklists/"
    status = blocking_pause_status()
    assert status.paused and 3590 < status.seconds_left <= 3600 and status.changed_by == "staff"

    response = web.post(reverse("dnsengine-pause"), {"minutes": ""})
    assert response["Location"] == reverse("engine-status")
    assert blocking_pause_status().until is None

    web.post(reverse("dnsengine-resume"), {"next": "https://evil.example/"})
    assert not blocking_pause_status().paused


def test_the_partial_shows_the_state_and_the_buttons_to_staff(staff, rf):
    from django.template.loader import render_to_string

    request = rf.get("/status/")
    request.user = staff
    blocking_pause(5, by="staff")

    html = render_to_string("dnsengine/_pause.html", request=request)

    assert "Blocking is paused" in html and "by staff" in html
    assert 'value="5"' in html and "Resume blocking" in html


def test_a_viewer_sees_the_state_without_buttons(viewer, rf):
    from django.template.loader import render_to_string

    request = rf.get("/status/")
    request.user = viewer

    html = render_to_string("dnsengine/_pause.html", request=request)

    assert "Blocking is on." in html and "Pause 5 min" not in html


def test_a_viewer_cannot_pause(web, viewer):
    web.force_login(viewer)

    response = web.post(reverse("dnsengine-pause"), {"minutes": "5"})

    assert response.status_code == 403
    assert not blocking_pause_status().paused


@pytest.fixture
def token(settings):
    settings.GLORYHOLE_API_TOKEN = "s3cret"
    return {"HTTP_AUTHORIZATION": "Bearer s3cret"}


def post_json(web, name: str, body, **headers):
    return web.post(reverse(name), json.dumps(body), content_type="application/json", **headers)


@pytest.mark.django_db
def test_the_api_pauses_with_the_token_and_resumes(web, token):
    response = post_json(web, "api-pause", {"minutes": 5}, **token)

    assert response.status_code == 200
    body = response.json()
    assert body["paused"] and 295 <= body["seconds_left"] <= 300 and body["changed_by"] == "API token"

    body = post_json(web, "api-pause", {"minutes": None}, **token).json()
    assert body["paused"] and body["until"] is None

    assert web.get(reverse("api-pause"), **token).json()["paused"]
    assert web.post(reverse("api-resume"), **token).json()["paused"] is False
    assert not blocking_pause_status().paused


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "send {"),
        ({"minutes": "5"}, "whole number or null"),
        ({"minutes": True}, "whole number or null"),
        ({"minutes": 0}, "a pause lasts 1 to 10080 minutes"),
        ({"minutes": 100000}, "a pause lasts 1 to 10080 minutes"),
        ([5], "send {"),
    ],
)
def test_the_api_refuses_a_bad_body(web, token, body, message):
    response = post_json(web, "api-pause", body, **token)

    assert response.status_code == 400 and message in response.json()["error"]
    assert not blocking_pause_status().paused


@pytest.mark.django_db
def test_the_api_refuses_a_body_that_is_not_json(web, token):
    response = web.post(reverse("api-pause"), "minutes=5", content_type="text/plain", **token)

    assert response.status_code == 400 and response.json() == {"error": "the body is not JSON"}


@pytest.mark.django_db
def test_the_api_needs_a_session_or_the_token(web, settings):
    settings.GLORYHOLE_API_TOKEN = "s3cret"

    assert post_json(web, "api-pause", {"minutes": 5}).status_code == 401
    assert post_json(web, "api-pause", {"minutes": 5}, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert web.post(reverse("api-resume")).status_code == 401
    assert not blocking_pause_status().paused


def test_the_api_takes_a_staff_session_with_its_csrf_token_only(staff, viewer):
    web = WebClient(enforce_csrf_checks=True)
    web.force_login(staff)
    assert post_json(web, "api-pause", {"minutes": 5}).status_code == 403  # no CSRF token: a forged request
    web.get(reverse("engine-status"))
    csrf = web.cookies["csrftoken"].value

    assert post_json(web, "api-pause", {"minutes": 5}, HTTP_X_CSRFTOKEN=csrf).status_code == 200
    assert blocking_pause_status().paused

    web.force_login(viewer)
    web.get(reverse("engine-status"))
    csrf = web.cookies["csrftoken"].value
    response = post_json(web, "api-resume", {}, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 403 and "only staff" in response.json()["error"]
    assert blocking_pause_status().paused
