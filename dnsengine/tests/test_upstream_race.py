"""A silent or slow upstream costs a query its p99 round trip, not the whole timeout, when there is another."""

from __future__ import annotations

import dataclasses
import time

import pytest

from dnsengine.core.options import parse_upstreams
from dnsengine.core.upstream import HEDGE_MIN, RTT_RECOMPUTE_EVERY, _RoundTrips
from gloryhole_site.testing.dnsclient import Client, answers, rcode
from gloryhole_site.testing.fake_upstream import FakeUpstream


@pytest.fixture
def two_upstreams():
    with FakeUpstream() as primary, FakeUpstream() as secondary:
        primary.behaviour.address = "192.0.2.10"
        secondary.behaviour.address = "192.0.2.20"
        yield primary, secondary


def engine_for(make_engine, engine_config, *upstreams, timeout: float = 2.0):
    addresses = ",".join(u.address for u in upstreams)
    return make_engine(
        dataclasses.replace(engine_config, upstreams=parse_upstreams(addresses), upstream_timeout=timeout)
    )


def assert_nothing_in_flight(engine) -> None:
    """The forwarder counts a question out just after its answer is handed on: allow it that moment."""
    deadline = time.monotonic() + 1
    while engine.forwarder.inflight:
        assert time.monotonic() < deadline, f"{engine.forwarder.inflight} still in flight"
        time.sleep(0.005)


def timed(client: Client, name: str):
    started = time.monotonic()
    reply = client.query(name, timeout=5)
    return reply, time.monotonic() - started


def test_a_silent_primary_costs_a_quarter_of_the_timeout_before_anything_is_known(
    make_engine, engine_config, two_upstreams
):
    primary, secondary = two_upstreams
    primary.behaviour.mode = "silent"
    engine = engine_for(make_engine, engine_config, primary, secondary)

    reply, took = timed(Client(engine.port), "first.example.com")

    assert answers(reply) == ["A 192.0.2.20"]
    assert took < 1.5  # the secondary was asked after 0.5 s, not after the 2 s timeout
    assert engine.stats.counters["upstream_raced"] == 1


def test_a_primary_that_falls_silent_costs_its_observed_round_trip(make_engine, engine_config, two_upstreams):
    primary, secondary = two_upstreams
    engine = engine_for(make_engine, engine_config, primary, secondary)
    client = Client(engine.port)
    for i in range(64):  # fast answers: its p99 is well under HEDGE_MIN
        assert answers(client.query(f"warm{i}.example.com")) == ["A 192.0.2.10"]
    assert engine.forwarder.hedge_delay(0) == HEDGE_MIN

    primary.behaviour.mode = "silent"
    reply, took = timed(client, "now-silent.example.com")

    assert answers(reply) == ["A 192.0.2.20"]
    assert took < 0.5  # the secondary was asked after HEDGE_MIN (0.05 s)


def test_a_slow_primary_is_raced_and_its_late_answer_is_not_a_failure(make_engine, engine_config, two_upstreams):
    primary, secondary = two_upstreams
    primary.behaviour.delay = 0.8
    engine = engine_for(make_engine, engine_config, primary, secondary)

    reply, took = timed(Client(engine.port), "slow.example.com")

    assert answers(reply) == ["A 192.0.2.20"] and took < 0.8
    deadline = time.monotonic() + 3
    while engine.stats.counters.get("upstream_late_replies", 0) < 1:
        assert time.monotonic() < deadline, "the primary's late answer was not seen"
        time.sleep(0.02)
    assert engine.forwarder._failures[0] == 0  # it answered: not a failure, not demoted
    assert_nothing_in_flight(engine)


@pytest.mark.integration
def test_with_every_upstream_silent_servfail_comes_when_the_last_attempt_times_out(
    make_engine, engine_config, two_upstreams
):
    primary, secondary = two_upstreams
    primary.behaviour.mode = secondary.behaviour.mode = "silent"
    engine = engine_for(make_engine, engine_config, primary, secondary, timeout=1.0)

    reply, took = timed(Client(engine.port), "nobody.example.com")

    # Raced at 0.25 s, so both attempts end by ~1.25 s: not 2 s one after the other.
    assert rcode(reply) == "SERVFAIL"
    assert 0.9 < took < 1.8
    assert (primary.received, secondary.received) == (1, 1)
    assert_nothing_in_flight(engine)


def test_a_single_upstream_is_never_raced(make_engine, engine_config, upstream):
    upstream.behaviour.delay = 0.3
    engine = make_engine(engine_config)

    assert answers(Client(engine.port).query("only.example.com")) == ["A 192.0.2.1"]
    assert upstream.received == 1
    assert "upstream_raced" not in engine.stats.counters


def test_round_trips_give_the_p99_of_the_recent_samples():
    rtts = _RoundTrips()
    for _ in range(RTT_RECOMPUTE_EVERY - 1):
        rtts.add(0.001)
    assert rtts.p99 is None
    rtts.add(0.001)
    assert rtts.p99 == 0.001

    rtts = _RoundTrips()
    for i in range(256):
        rtts.add(0.5 if i % 50 == 10 else 0.01)
    assert rtts.p99 == 0.5  # 5 slow ones in 256 (2 %): the p99 is one of them

    for _ in range(256):
        rtts.add(0.02)
    assert rtts.p99 == 0.02  # old samples leave the window


@pytest.mark.integration
def test_a_race_timer_of_an_answered_query_does_not_race_a_later_one_with_the_same_id(
    make_engine, engine_config, two_upstreams
):
    primary, secondary = two_upstreams
    engine = engine_for(make_engine, engine_config, primary, secondary, timeout=4.0)  # race after 1 s
    engine.forwarder._random32 = lambda: 0x1234  # every attempt takes the same socket and ID
    client = Client(engine.port)
    assert answers(client.query("one.example.com")) == ["A 192.0.2.10"]  # leaves its race timer behind
    time.sleep(0.4)
    primary.behaviour.delay = 0.8  # answers after the first query's timer is due, before its own

    assert answers(client.query("two.example.com", timeout=5)) == ["A 192.0.2.10"]

    assert engine.stats.counters.get("upstream_raced", 0) == 0
    assert secondary.received == 0


def test_drain_waits_until_a_forwarded_answer_has_been_handed_on(make_engine, engine_config, upstream, monkeypatch):
    engine = make_engine(engine_config)
    counted_while_answering = []
    finish = engine.resolver._finish_forwarded

    def observing(*args, **kwargs):
        counted_while_answering.append(engine.forwarder.inflight)
        return finish(*args, **kwargs)

    monkeypatch.setattr(engine.resolver, "_finish_forwarded", observing)

    assert answers(Client(engine.port).query("counted.example.com")) == ["A 192.0.2.1"]
    assert counted_while_answering == [1]
    assert_nothing_in_flight(engine)
