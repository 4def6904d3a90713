"""Pausing blocking in the engine: the resolver's decision, the watcher's cache drops, a running engine.

The stored state is tested in test_services_pause.py, the buttons and the API in test_views_pause.py.
"""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from types import SimpleNamespace

import dns.message
import pytest
from django.db import OperationalError
from django.utils import timezone
from dnslib import QTYPE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from dnsengine.core import wire
from dnsengine.core.cache import ReplyCache, TtlPolicy
from dnsengine.core.options import parse_blocking_mode
from dnsengine.core.resolver import Resolver
from dnsengine.core.stats import EngineStats
from dnsengine.models import BlockedDomain, BlockingPause, Blocklist
from dnsengine.runtime import watcher
from dnsengine.runtime.watcher import ConfigWatcher
from dnsengine.services import config_generation_bump
from dnsengine.services.pause import blocking_pause, blocking_resume
from gloryhole_site.testing.dnsclient import Client, answers

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

    monkeypatch.setattr(watcher, "config_generation_current", database_down)
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
    until = blocking_pause(1).until.timestamp()
    # Loaded on a wall clock that stands at the pause's start: on a busy machine the
    # time the test itself takes must not count against the wait.
    rig.watcher.wall_clock = lambda: until - 60 + rig.clocks.offset
    rig.watcher.load_now()
    rig.clocks.offset = 59.5

    assert rig.watcher._next_wait() == pytest.approx(0.505, abs=0.01)


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
