"""The per-client token bucket: its arithmetic on a fake clock, its bounded table, and the engine over real sockets."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from prometheus_client import generate_latest

from dnsengine.core.access import parse_networks
from dnsengine.core.ratelimit import RateLimiter
from dnsengine.core.stats import EngineStats
from dnsengine.models import Client, ClientGroup, default_group
from dnsengine.runtime.metrics import metrics_registry
from dnsengine.services import config_generation_bump
from gloryhole_site.testing.dnsclient import query_from, rcode
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.querylog import RecordingSink
from querylog.logger.writer import QueryLogWriter
from querylog.models import QueryLog

# -- the bucket ------------------------------------------------------------------------


def test_a_new_client_may_send_the_whole_rate_at_once_and_no_more():
    limiter = RateLimiter(rate=5, window=60.0)

    assert [limiter.allow("192.0.2.1", 100.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.refused == 2


def test_tokens_come_back_at_rate_per_window():
    limiter = RateLimiter(rate=6, window=60.0)  # one token every 10 s
    for _ in range(6):
        limiter.allow("c", 0.0)

    assert not limiter.allow("c", 9.9)  # 0.99 of a token: not yet
    assert limiter.allow("c", 10.0)  # 0.99 + 0.01: one whole token
    assert not limiter.allow("c", 10.0)
    assert limiter.allow("c", 30.0) and limiter.allow("c", 30.0)  # two more after 20 s
    assert not limiter.allow("c", 30.0)


def test_a_bucket_never_holds_more_than_the_rate():
    limiter = RateLimiter(rate=3, window=3.0)
    limiter.allow("c", 0.0)

    results = [limiter.allow("c", 1_000_000.0) for _ in range(5)]  # idle for ages: still only 3

    assert results == [True, True, True, False, False]


def test_a_refused_query_takes_no_token():
    limiter = RateLimiter(rate=2, window=2.0)  # one token a second
    limiter.allow("c", 0.0)
    limiter.allow("c", 0.0)
    for _ in range(100):
        assert not limiter.allow("c", 0.5)

    assert limiter.allow("c", 1.0)  # hammering did not push the refill further away


def test_clients_have_buckets_of_their_own():
    limiter = RateLimiter(rate=2, window=60.0)
    for _ in range(5):
        limiter.allow("192.0.2.2", 0.0)

    assert limiter.allow("192.0.2.3", 0.0) and limiter.allow("192.0.2.3", 0.0)
    assert limiter.limited_clients(0.0) == ["192.0.2.2", "192.0.2.3"]
    assert limiter.limited_clients(30.0) == []  # a token back for each


def test_an_exempt_client_is_never_limited():
    limiter = RateLimiter(rate=2, window=60.0, exempt=parse_networks("192.168.1.1, 10.0.0.0/8", "E"))

    assert all(limiter.allow("192.168.1.1", 0.0) for _ in range(1000))
    assert all(limiter.allow("::ffff:10.1.2.3", 0.0) for _ in range(1000))
    assert not all(limiter.allow("192.168.1.2", 0.0) for _ in range(3))
    assert limiter.limited_clients(0.0) == ["192.168.1.2"]


def test_rate_zero_is_not_a_limiter():
    with pytest.raises(ValueError):
        RateLimiter(rate=0, window=60.0)


# -- the bounded table -----------------------------------------------------------------


def test_a_flood_from_100k_addresses_keeps_the_table_at_its_bound():
    stats = EngineStats()
    limiter = RateLimiter(rate=1000, window=60.0, max_clients=10000, stats=stats)

    for i in range(100_000):
        limiter.allow(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", i * 1e-5)  # a second in all
        assert limiter.size <= 10000

    assert limiter.evictions == stats.counters["rate_limit_evictions"] >= 100_000 - 10000


def test_a_flood_of_new_addresses_does_not_free_a_busy_client_from_its_limit():
    limiter = RateLimiter(rate=10, window=60.0, max_clients=100)
    now = 0.0
    for _ in range(10):
        assert limiter.allow("192.168.1.50", now)

    for i in range(20_000):
        now += 1e-4  # the flood's buckets stay short of full: only the sweep's second step can make room
        limiter.allow(f"10.0.{i >> 8}.{i & 255}", now)
        if i % 20 == 0:
            assert not limiter.allow("192.168.1.50", now), f"the busy client got through after {i} new addresses"

    assert limiter.evictions >= 20_000 - 100
    assert "192.168.1.50" in limiter.limited_clients(now)


def test_buckets_refilled_to_the_brim_are_the_first_to_go():
    limiter = RateLimiter(rate=10, window=10.0, max_clients=4)
    limiter.allow("idle-1", 0.0)
    limiter.allow("idle-2", 0.0)
    for _ in range(10):
        limiter.allow("busy", 0.0)
    for _ in range(5):
        limiter.allow("recent", 0.5)

    limiter.allow("new", 5.0)  # idle-1 and idle-2 are full again by now; busy and recent are not

    assert limiter.size == 3
    assert limiter.limited_clients(5.0) == []  # busy has 5 tokens back
    assert not all(limiter.allow("busy", 5.0) for _ in range(6))  # ...and no more: its bucket was kept


# -- the log line ----------------------------------------------------------------------


def test_it_logs_a_limited_client_at_most_once_a_minute(caplog):
    limiter = RateLimiter(rate=2, window=600.0)  # a token back every 300 s
    caplog.set_level(logging.WARNING, logger="dnsengine.core.ratelimit")

    def lines():
        return [r.getMessage() for r in caplog.records if r.name == "dnsengine.core.ratelimit"]

    for t in (0.0, 0.0, 0.0, 1.0, 20.0, 59.0):
        limiter.allow("192.0.2.9", t)
    assert len(lines()) == 1
    assert lines()[0].startswith("client 192.0.2.9 is over its rate limit of 2 queries per 600s")

    for _ in range(5):
        limiter.allow("192.0.2.9", 60.5)
    assert len(lines()) == 2
    assert "(4 refused since the last line about it)" in lines()[1]


def test_other_clients_get_their_own_line(caplog):
    limiter = RateLimiter(rate=1, window=60.0)
    caplog.set_level(logging.WARNING, logger="dnsengine.core.ratelimit")

    for client, t in (("a", 0.0), ("a", 0.0), ("b", 2.0), ("b", 2.0)):
        limiter.allow(client, t)

    assert [r.getMessage().split()[1] for r in caplog.records] == ["a", "b"]


# -- the engine, over real sockets -----------------------------------------------------


@pytest.fixture
def limited_engine(make_engine, engine_config):
    sink = RecordingSink()
    config = dataclasses.replace(engine_config, rate_limit=5, rate_limit_window=60.0, rate_limit_exempt=())
    return make_engine(config, query_logger=sink), sink


def test_a_client_past_its_rate_is_refused_and_another_is_not(limited_engine):
    engine, sink = limited_engine

    first = [rcode(query_from("127.0.0.2", engine.port)) for _ in range(5)]
    over = [rcode(query_from("127.0.0.2", engine.port, tcp=i % 2 == 1)) for i in range(3)]
    other = [rcode(query_from("127.0.0.3", engine.port)) for _ in range(4)]

    assert first == ["NOERROR"] * 5  # the same question: from the rendered replies after the first
    assert over == ["REFUSED"] * 3
    assert other == ["NOERROR"] * 4
    assert engine.stats.counters["refused_rate_limited"] == 3
    assert engine.stats.queries_by_status["ratelimited"] == 3
    limited = [e for e in sink.wait_for(12) if e.status == "ratelimited"]
    assert {(e.client, e.rcode, e.rule) for e in limited} == {("127.0.0.2", "REFUSED", "ratelimit")}
    assert engine.rate_limiter.limited_clients(engine.resolver.clock()) == ["127.0.0.2"]
    assert engine.rate_limited_clients() == ["127.0.0.2"]  # what the heartbeat publishes

    QueryLogWriter()(sink.entries)
    assert QueryLog.objects.filter(status="ratelimited", client="127.0.0.2").count() == 3


def test_the_rate_limit_is_in_the_metrics(limited_engine):
    engine, _ = limited_engine
    for _ in range(7):
        query_from("127.0.0.2", engine.port)
    query_from("127.0.0.3", engine.port)

    text = generate_latest(metrics_registry(engine_stats=engine.stats)).decode()

    assert 'dns_engine_refused_total{reason="rate_limited"} 2.0' in text
    assert "dns_engine_rate_limit_clients 2.0" in text
    assert "dns_engine_rate_limited_clients 1.0" in text


def test_an_exempt_client_is_never_refused(make_engine, engine_config):
    config = dataclasses.replace(
        engine_config, rate_limit=3, rate_limit_window=60.0, rate_limit_exempt=parse_networks("127.0.0.2", "E")
    )
    engine = make_engine(config)

    assert [rcode(query_from("127.0.0.2", engine.port)) for _ in range(10)] == ["NOERROR"] * 10
    assert [rcode(query_from("127.0.0.3", engine.port)) for _ in range(4)] == ["NOERROR"] * 3 + ["REFUSED"]


def test_loopback_is_exempt_by_default_and_zero_turns_the_limit_off(make_engine, engine_config):
    assert engine_config.rate_limit == 1000
    assert engine_config.rate_limit_exempt == parse_networks("127.0.0.0/8, ::1", "E")

    engine = make_engine(dataclasses.replace(engine_config, rate_limit=0))

    assert engine.rate_limiter is None and engine.resolver.rate_limiter is None


def test_a_client_in_a_rate_limit_exempt_group_is_never_refused(make_engine, engine_config):
    router = ClientGroup.objects.create(name="router", rate_limit_exempt=True)
    Client.objects.create(name="the router", ip="127.0.0.2", group=router)
    Client.objects.create(name="a laptop", ip="127.0.0.3", group=default_group())
    config = dataclasses.replace(engine_config, rate_limit=3, rate_limit_window=60.0, rate_limit_exempt=())
    engine = make_engine(config)
    engine_reload(engine)

    assert [rcode(query_from("127.0.0.2", engine.port)) for _ in range(10)] == ["NOERROR"] * 10
    assert [rcode(query_from("127.0.0.3", engine.port)) for _ in range(4)] == ["NOERROR"] * 3 + ["REFUSED"]


def test_an_exempt_default_group_exempts_everyone(make_engine, engine_config):
    group = default_group()
    group.rate_limit_exempt = True
    group.save()
    config_generation_bump()
    engine = make_engine(dataclasses.replace(engine_config, rate_limit=3, rate_limit_window=60.0, rate_limit_exempt=()))
    engine_reload(engine)

    assert [rcode(query_from("127.0.0.3", engine.port)) for _ in range(6)] == ["NOERROR"] * 6
