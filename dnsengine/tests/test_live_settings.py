"""Settings saved on /settings/ reach a running engine over real sockets, without a restart."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from dnsengine.engine_settings import live_settings_save
from dnsengine.models import BlockRule
from dnsengine.runtime.runner import EngineRunner
from gloryhole_site.testing.dnsclient import Client, answers, rcode
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.fake_upstream import Behaviour, FakeUpstream
from querylog.models import QueryLog

pytestmark = pytest.mark.integration


@pytest.fixture
def second_upstream():
    server = FakeUpstream("127.0.0.1", 0, Behaviour(address="198.51.100.7")).start()
    yield server
    server.stop()


def test_new_upstreams_saved_are_used_by_the_running_engine(engine, dns_client, upstream, second_upstream):
    assert answers(dns_client.query("one.example")) == ["A 192.0.2.1"]

    live_settings_save({"GLORYHOLE_UPSTREAMS": second_upstream.address})
    engine_reload(engine)

    assert answers(dns_client.query("two.example")) == ["A 198.51.100.7"]
    assert answers(dns_client.query("one.example")) == ["A 198.51.100.7"]  # the cache went with the old upstreams
    assert second_upstream.received == 2
    assert upstream.received == 1


def test_a_query_waiting_on_the_old_upstreams_is_still_answered(engine, upstream, second_upstream):
    upstream.behaviour.delay = 0.3  # under the engine's 0.5 s upstream timeout
    replies = []
    asker = threading.Thread(target=lambda: replies.append(Client(engine.port).query("slow.example")))
    asker.start()
    deadline = time.monotonic() + 5
    while upstream.received == 0:
        assert time.monotonic() < deadline, "the query never reached the old upstream"
        time.sleep(0.01)

    live_settings_save({"GLORYHOLE_UPSTREAMS": second_upstream.address})
    engine_reload(engine)  # stops the old forwarder once it has answered
    asker.join(5)

    [reply] = replies
    assert rcode(reply) == "NOERROR"
    assert answers(reply) == ["A 192.0.2.1"]


def test_the_watcher_applies_saved_upstreams_within_the_reload_interval(engine, dns_client, second_upstream):
    live_settings_save({"GLORYHOLE_UPSTREAMS": second_upstream.address})

    deadline = time.monotonic() + 5  # the engine polls every 0.1 s
    while answers(dns_client.query(f"q{time.monotonic_ns()}.example")) != ["A 198.51.100.7"]:
        assert time.monotonic() < deadline, "the engine never used the new upstream"
        time.sleep(0.05)


def test_clearing_a_saved_value_goes_back_to_the_start_up_one(engine, dns_client, upstream, second_upstream):
    live_settings_save({"GLORYHOLE_UPSTREAMS": second_upstream.address})
    engine_reload(engine)
    assert answers(dns_client.query("there.example")) == ["A 198.51.100.7"]
    live_settings_save({"GLORYHOLE_UPSTREAMS": ""})
    engine_reload(engine)

    assert answers(dns_client.query("back.example")) == ["A 192.0.2.1"]


def test_a_blocking_mode_saved_changes_the_blocked_answer(engine, dns_client):
    BlockRule.objects.create(kind="wildcard", pattern="*.ads.example")
    engine_reload(engine)
    assert answers(dns_client.query("x.ads.example")) == ["A 0.0.0.0"]

    live_settings_save({"GLORYHOLE_BLOCKING_MODE": "nxdomain"})
    engine_reload(engine)
    assert rcode(dns_client.query("x.ads.example")) == "NXDOMAIN"

    live_settings_save({"GLORYHOLE_BLOCKING_MODE": "ip:192.0.2.99", "GLORYHOLE_BLOCK_TTL": "42"})
    engine_reload(engine)
    reply = dns_client.query("x.ads.example")
    assert answers(reply) == ["A 192.0.2.99"]
    assert reply.answer[0].ttl == 42


def test_a_value_the_environment_sets_wins_over_the_saved_one(engine, dns_client, settings, second_upstream):
    settings.GLORYHOLE_SET_IN_ENVIRONMENT = frozenset({"GLORYHOLE_UPSTREAMS"})
    from dnsengine.models import EngineSetting

    EngineSetting.objects.create(name="GLORYHOLE_UPSTREAMS", value=second_upstream.address)
    live_settings_save({"GLORYHOLE_BLOCK_TTL": "5"})  # bumps the generation
    engine_reload(engine)

    assert answers(dns_client.query("env.example")) == ["A 192.0.2.1"]
    assert second_upstream.received == 0


def test_cache_size_and_ttl_clamps_apply_live(engine, dns_client, upstream):
    live_settings_save({"GLORYHOLE_CACHE_MIN_TTL": "600", "GLORYHOLE_CACHE_MAX_TTL": "900"})
    engine_reload(engine)
    assert dns_client.query("clamp.example").answer[0].ttl == 600  # the upstream says 300

    live_settings_save({"GLORYHOLE_CACHE_SIZE": "0"})
    engine_reload(engine)
    dns_client.query("nocache.example")
    dns_client.query("nocache.example")
    assert engine.cache.max_size == 0
    assert [q for q in upstream.queries if q[0].startswith("nocache")] == [("nocache.example", "A")] * 2


def test_query_log_workers_and_batch_saved_swap_the_logger_losing_nothing(transactional_db, engine_config):
    runner = EngineRunner(dataclasses.replace(engine_config, metrics_port=0))
    assert runner.start()
    try:
        client = Client(runner.engine.port)
        assert runner.query_logger.workers == 1
        for i in range(50):
            client.query(f"before{i}.example")

        live_settings_save({"GLORYHOLE_QUERY_LOG_WORKERS": "3", "GLORYHOLE_QUERY_LOG_BATCH": "7"})
        engine_reload(runner.engine)
        for i in range(50):
            client.query(f"after{i}.example")

        assert runner.query_logger.workers == 3
        assert runner.query_logger.config.batch_size == 7
        assert runner.query_logger.generation == 1
    finally:
        report = runner.stop()
    assert report.written == 100
    assert report.dropped == report.unwritten == 0
    assert QueryLog.objects.count() == 100
