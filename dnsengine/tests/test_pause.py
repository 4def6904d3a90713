"""Pausing blocking: the stored state, the resolver's decision, the watcher's cache drops, the web and API."""

from __future__ import annotations

import json
import math
import threading
from datetime import timedelta
from types import SimpleNamespace

import dns.message
import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import Client as WebClient
from django.urls import reverse
from django.utils import timezone
from dnslib import QTYPE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from dnsengine import loader, wire
from dnsengine.cache import ReplyCache, TtlPolicy
from dnsengine.config import parse_blocking_mode
from dnsengine.loader import ConfigWatcher
from dnsengine.models import BlockedDomain, BlockingPause, Blocklist
from dnsengine.pause import (
    MAX_PAUSE_MINUTES,
    blocking_pause,
    blocking_pause_status,
    blocking_paused_until,
    blocking_resume,
)
from dnsengine.resolver import Resolver
from dnsengine.services import config_generation_bump
from dnsengine.stats import EngineStats
from gloryhole_site.testing.dnsclient import Client, answers

# --- the stored state ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_timed_pause_ends_after_its_minutes():
    before = timezone.now()
    status = blocking_pause(5, by="alice")

    assert status.paused and status.changed_by == "alice"
    assert timedelta(minutes=5) <= status.until - before < timedelta(minutes=5, seconds=5)
    assert 295 <= status.seconds_left <= 300
    assert blocking_paused_until() == pytest.approx(status.until.timestamp())
    assert blocking_paused_until(now=status.until.timestamp() + 1) == 0.0


@pytest.mark.django_db
def test_a_pause_without_minutes_lasts_until_resumed():
    status = blocking_pause(None, by="bob")

    assert status.paused and status.until is None and status.seconds_left is None
    assert blocking_paused_until() == math.inf

    resumed = blocking_resume(by="bob")

    assert not resumed.paused and blocking_paused_until() == 0.0
    assert not blocking_pause_status().paused


@pytest.mark.django_db
def test_an_expired_pause_reads_as_not_paused():
    BlockingPause.objects.create(pk=1, active=True, until=timezone.now() - timedelta(seconds=1))

    assert not blocking_pause_status().paused
    assert blocking_paused_until() == 0.0


@pytest.mark.django_db
def test_nothing_is_paused_on_a_fresh_install():
    assert blocking_pause_status().as_json() == {
        "paused": False,
        "until": None,
        "seconds_left": None,
        "changed_at": None,
        "changed_by": "",
    }
    assert blocking_paused_until() == 0.0


@pytest.mark.django_db
@pytest.mark.parametrize("minutes", [0, -5, MAX_PAUSE_MINUTES + 1])
def test_a_pause_of_no_time_or_too_long_is_refused(minutes):
    with pytest.raises(ValueError, match="a pause lasts 1 to 10080 minutes"):
        blocking_pause(minutes)
    assert not BlockingPause.objects.exists()


@pytest.mark.django_db
def test_pausing_does_not_make_engines_rebuild_their_lists():
    from dnsengine.services import config_generation_current

    generation = config_generation_current()
    blocking_pause(5)
    blocking_resume()
    assert config_generation_current() == generation


# --- the resolver and the watcher, on controllable clocks --------------------------------------


class Clocks:
    """The resolver's clock and the wall clock, moved together by the test."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.start = 1000.0

    def resolver(self) -> float:
        return self.start + self.offset

    def wall(self) -> float:
        return timezone.now().timestamp() + self.offset


class Upstream:
    """Answers every forwarded query at once with A 192.0.2.1, TTL 3600."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def forward(self, qname_wire: bytes, qtype: int, qclass: int, do: bool, callback) -> bool:
        name = wire.name_to_text(qname_wire)
        self.asked.append(name)
        reply = DNSRecord(DNSHeader(qr=1, ra=1, rd=1), q=DNSQuestion(name, qtype))
        reply.add_answer(RR(name, QTYPE.A, rdata=A("192.0.2.1"), ttl=3600))
        callback(reply.pack(), "fake")
        return True


class Transport:
    proto = "udp"

    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def send(self, reply: bytes, addr) -> None:
        self.replies.append(reply)


class Sink:
    def __init__(self) -> None:
        self.entries = []

    def log_async(self, entry) -> bool:
        self.entries.append(entry)
        return True


@pytest.fixture
def rig(transactional_db):
    """A resolver with one list (ads.example.com) and a watcher, both on Clocks.

    Transactional: the watcher closes old connections, as it does in its thread.
    """
    blocklist = Blocklist.objects.create(name="ads")
    BlockedDomain.objects.create(blocklist=blocklist, domain="ads.example.com")
    config_generation_bump()
    clocks = Clocks()
    upstream = Upstream()
    sink = Sink()
    resolver = Resolver(
        forwarder=upstream,
        blocking=parse_blocking_mode("null"),
        block_ttl=3600,
        cache=ReplyCache(100),
        ttl_policy=TtlPolicy(),
        stats=EngineStats(),
        query_logger=sink,
        clock=clocks.resolver,
    )
    watcher = ConfigWatcher(resolver, 1.0, wall_clock=clocks.wall)
    assert watcher.load_now()
    return SimpleNamespace(clocks=clocks, resolver=resolver, watcher=watcher, upstream=upstream, sink=sink)


def ask(resolver: Resolver, name: str) -> list[str]:
    transport = Transport()
    resolver.handle(dns.message.make_query(name, "A").to_wire(), "192.0.2.50", transport, None)
    return answers(dns.message.from_wire(transport.replies[-1]))


def test_a_paused_resolver_forwards_listed_names_and_logs_what_would_have_blocked_them(rig):
    blocking_pause(5, by="test")

    assert rig.watcher.load_now()

    assert ask(rig.resolver, "ads.example.com") == ["A 192.0.2.1"]
    assert rig.upstream.asked == ["ads.example.com"]
    entry = rig.sink.entries[-1]
    assert (entry.status, entry.rule) == ("forwarded", "paused:list:ads")


def test_blocked_answers_cached_before_a_pause_are_not_served_during_it(rig):
    assert ask(rig.resolver, "ads.example.com") == ["A 0.0.0.0"]
    assert ask(rig.resolver, "ads.example.com") == ["A 0.0.0.0"]  # now from the caches
    blocking_pause(None)

    assert rig.watcher.load_now()

    assert ask(rig.resolver, "ads.example.com") == ["A 192.0.2.1"]


def test_a_timed_pause_ends_by_itself_and_what_was_cached_during_it_is_dropped(rig):
    blocking_pause(5)
    assert rig.watcher.load_now()
    assert ask(rig.resolver, "ads.example.com") == ["A 192.0.2.1"]  # cached for an hour
    rig.clocks.offset = 299
    assert not rig.watcher.load_now()
    assert ask(rig.resolver, "ads.example.com") == ["A 192.0.2.1"]

    rig.clocks.offset = 301
    # The resolver blocks again on its own clock, even before the watcher runs...
    assert ask(rig.resolver, "x.ads.example.com") == ["A 0.0.0.0"]
    # ...and the watcher drops the forwarded answers cached during the pause.
    assert rig.watcher.load_now()

    assert ask(rig.resolver, "ads.example.com") == ["A 0.0.0.0"]
    assert rig.sink.entries[-1].status == "blocked"
    assert rig.resolver.snapshot.paused_until == 0.0


def test_a_pause_ends_and_its_answers_are_dropped_even_while_the_database_is_down(rig, monkeypatch):
    blocking_pause(5)
    assert rig.watcher.load_now()
    assert ask(rig.resolver, "ads.example.com") == ["A 192.0.2.1"]

    def database_down():
        raise OperationalError("database is locked")

    monkeypatch.setattr(loader, "config_generation_current", database_down)
    rig.clocks.offset = 301

    assert rig.watcher.load_now()

    assert ask(rig.resolver, "ads.example.com") == ["A 0.0.0.0"]


def test_a_listed_name_first_asked_after_the_end_is_blocked_before_the_watcher_runs(rig):
    blocking_pause(1)
    assert rig.watcher.load_now()
    rig.clocks.offset = 61

    assert ask(rig.resolver, "ads.example.com") == ["A 0.0.0.0"]
    assert rig.upstream.asked == []


def test_resuming_early_brings_blocking_back(rig):
    blocking_pause(60)
    assert rig.watcher.load_now()
    assert ask(rig.resolver, "ads.example.com") == ["A 192.0.2.1"]
    blocking_resume()

    assert rig.watcher.load_now()

    assert ask(rig.resolver, "ads.example.com") == ["A 0.0.0.0"]


def test_a_pause_survives_a_reload_of_the_lists(rig):
    blocking_pause(None)
    assert rig.watcher.load_now()
    config_generation_bump()

    assert rig.watcher.load_now()

    assert rig.resolver.snapshot.paused_until == math.inf
    assert ask(rig.resolver, "ads.example.com") == ["A 192.0.2.1"]


def test_the_watcher_wakes_when_the_pause_ends_not_an_interval_later(rig):
    rig.watcher.interval = 30
    blocking_pause(1)
    rig.watcher.load_now()
    rig.clocks.offset = 59.5

    assert rig.watcher._next_wait() == pytest.approx(0.505, abs=0.05)


# --- end to end: a real engine on loopback ----------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_running_engine_stops_blocking_during_a_short_pause_and_resumes_by_itself(make_engine, engine_config):
    blocklist = Blocklist.objects.create(name="ads")
    BlockedDomain.objects.create(blocklist=blocklist, domain="ads.example.com")
    engine = make_engine(engine_config)
    client = Client(engine.port)
    assert answers(client.query("ads.example.com")) == ["A 0.0.0.0"]
    changed = threading.Event()
    engine.watcher.on_reload = lambda snapshot: changed.set()

    BlockingPause.objects.create(pk=1, active=True, until=timezone.now() + timedelta(seconds=1.5))
    assert changed.wait(5), "the engine did not pick the pause up"
    changed.clear()
    assert answers(client.query("ads.example.com")) == ["A 192.0.2.1"]

    assert changed.wait(5), "the engine did not notice the end of the pause"
    assert engine.resolver.snapshot.paused_until == 0.0
    assert answers(client.query("ads.example.com")) == ["A 0.0.0.0"]


# --- the web page buttons and the API ----------------------------------------------------------


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
