"""Allowed and disallowed clients: the verdict, its cache, and the engine refusing over real sockets."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_network

import dns.exception
import pytest
from django.urls import reverse
from prometheus_client import generate_latest

from dnsengine.core.access import (
    DISALLOWED,
    NOT_ALLOWED,
    AccessControl,
    client_address,
    parse_networks,
    parse_refused_action,
)
from dnsengine.core.options import ConfigError
from dnsengine.core.stats import EngineStats
from dnsengine.runtime.metrics import metrics_registry
from gloryhole_site.testing.dnsclient import Client, answers, query_from, rcode
from gloryhole_site.testing.querylog import RecordingSink, make_entry
from querylog.logger.writer import QueryLogWriter
from querylog.models import DomainRollup, QueryLog, QueryRollup

# -- parsing ---------------------------------------------------------------------------


def test_it_parses_addresses_and_networks_of_both_families():
    assert parse_networks(" 192.168.1.0/24, 10.0.0.7 ,,2001:db8::/32, ::1", "X") == (
        ip_network("192.168.1.0/24"),
        ip_network("10.0.0.7/32"),
        ip_network("2001:db8::/32"),
        ip_network("::1/128"),
    )
    assert parse_networks("", "X") == ()
    # Host bits are forgiven, as a person writes them: 192.168.1.1/24 is the /24.
    assert parse_networks("192.168.1.1/24", "X") == (ip_network("192.168.1.0/24"),)


def test_an_ipv4_mapped_network_means_the_ipv4_one():
    assert parse_networks("::ffff:10.0.0.0/104, ::ffff:192.168.1.5", "X") == (
        ip_network("10.0.0.0/8"),
        ip_network("192.168.1.5/32"),
    )


@pytest.mark.parametrize("raw", ["laptop", "10.0.0.0/33", "300.1.1.1", "::1/129", "10.0.0.0/8/8"])
def test_it_refuses_what_is_not_an_address_naming_the_setting(raw):
    with pytest.raises(ConfigError, match=r"^GLORYHOLE_ALLOWED_CLIENTS: .* is not an IP address or network"):
        parse_networks(f"10.0.0.1,{raw}", "GLORYHOLE_ALLOWED_CLIENTS")


def test_the_refused_action_is_refuse_or_drop():
    assert parse_refused_action("") == "refuse"
    assert parse_refused_action(" DROP ") == "drop"
    with pytest.raises(ConfigError, match="GLORYHOLE_REFUSED_CLIENTS_ACTION='nxdomain'"):
        parse_refused_action("nxdomain")


def test_a_client_address_is_read_as_ipv4_when_mapped():
    assert str(client_address("::ffff:192.168.1.5")) == "192.168.1.5"
    assert str(client_address("2001:db8::1")) == "2001:db8::1"
    assert client_address("not an address") is None


# -- the verdict -----------------------------------------------------------------------


def test_with_no_lists_everyone_may_ask_and_the_resolver_skips_the_check():
    access = AccessControl((), ())

    assert not access.active
    assert access.verdict("192.0.2.1") == ""


def test_a_disallowed_client_is_refused_even_when_the_allowed_list_names_it():
    access = AccessControl(parse_networks("192.168.1.0/24", "A"), parse_networks("192.168.1.66", "D"))

    assert access.verdict("192.168.1.10") == ""
    assert access.verdict("192.168.1.66") == DISALLOWED
    assert access.verdict("192.168.2.10") == NOT_ALLOWED


def test_an_empty_allowed_list_lets_in_everyone_but_the_disallowed():
    access = AccessControl((), parse_networks("10.0.0.0/8, 2001:db8::/32", "D"))

    assert access.verdict("192.0.2.1") == ""
    assert access.verdict("10.9.9.9") == DISALLOWED
    assert access.verdict("2001:db8::5") == DISALLOWED
    assert access.verdict("2001:db9::5") == ""


def test_an_ipv4_mapped_client_is_judged_as_ipv4():
    access = AccessControl(parse_networks("192.168.1.0/24", "A"), parse_networks("192.168.1.66", "D"))

    assert access.verdict("::ffff:192.168.1.10") == ""
    assert access.verdict("::ffff:192.168.1.66") == DISALLOWED
    assert access.verdict("::ffff:10.0.0.1") == NOT_ALLOWED


def test_an_ipv6_client_with_a_zone_is_judged_by_its_address():
    access = AccessControl(parse_networks("fe80::/10", "A"), ())

    assert access.verdict("fe80::1%eth0") == ""
    assert access.verdict("2001:db8::1") == NOT_ALLOWED


def test_the_verdict_cache_stays_at_its_bound_and_counts_evictions():
    stats = EngineStats()
    access = AccessControl((), parse_networks("10.0.0.0/8", "D"), cache_max=100, stats=stats)

    for i in range(1000):
        assert access.verdict(f"10.0.{i // 256}.{i % 256}") == DISALLOWED

    assert access.cached <= 100
    assert access.evictions == stats.counters["access_cache_evictions"] >= 900


# -- the engine, over real sockets -----------------------------------------------------


@pytest.fixture
def start(make_engine, engine_config):
    """start(**config changes) -> (engine, sink): an engine that logs into a RecordingSink."""

    def start(**changes):
        sink = RecordingSink()
        engine = make_engine(dataclasses.replace(engine_config, **changes), query_logger=sink)
        return engine, sink

    return start


def test_a_disallowed_client_gets_refused_and_another_is_answered(start, upstream):
    engine, sink = start(disallowed_clients=parse_networks("127.0.0.2", "D"))

    refused = query_from("127.0.0.2", engine.port)
    refused_tcp = query_from("127.0.0.2", engine.port, tcp=True)
    answered = query_from("127.0.0.1", engine.port)

    assert rcode(refused) == rcode(refused_tcp) == "REFUSED" and not refused.answer
    assert rcode(answered) == "NOERROR" and answers(answered) == ["A 192.0.2.1"]
    assert upstream.queries.count(("example.com", "A")) == 1  # the refused ones never left the box
    entries = sink.wait_for(3)
    assert sorted((e.client, e.protocol, e.status, e.rcode, e.rule) for e in entries) == [
        ("127.0.0.1", "udp", "forwarded", "NOERROR", ""),
        ("127.0.0.2", "tcp", "refused", "REFUSED", "access:disallowed"),
        ("127.0.0.2", "udp", "refused", "REFUSED", "access:disallowed"),
    ]
    assert engine.stats.counters["refused_disallowed"] == 2
    assert engine.stats.queries_by_status["refused"] == 2


def test_a_refused_client_is_not_answered_from_the_rendered_replies(start):
    engine, _ = start(disallowed_clients=parse_networks("127.0.0.2", "D"))
    client = Client(engine.port)
    for _ in range(3):  # the exact repeat is now a rendered reply
        assert rcode(client.query("example.com")) == "NOERROR"

    assert rcode(query_from("127.0.0.2", engine.port)) == "REFUSED"


def test_with_an_allowed_list_only_the_clients_on_it_are_answered(start):
    engine, sink = start(allowed_clients=parse_networks("127.0.0.1, 127.0.0.3", "A"))

    assert rcode(query_from("127.0.0.1", engine.port)) == "NOERROR"
    assert rcode(query_from("127.0.0.3", engine.port)) == "NOERROR"
    assert rcode(query_from("127.0.0.2", engine.port)) == "REFUSED"
    assert engine.stats.counters["refused_not_allowed"] == 1
    assert "refused_disallowed" not in engine.stats.counters
    assert [e.rule for e in sink.wait_for(3) if e.status == "refused"] == ["access:not_allowed"]


def test_the_drop_action_sends_no_answer_and_still_logs_the_query(start):
    engine, sink = start(disallowed_clients=parse_networks("127.0.0.2", "D"), refused_clients_action="drop")

    with pytest.raises(dns.exception.Timeout):
        query_from("127.0.0.2", engine.port, "dropped.example", timeout=0.5)
    assert rcode(query_from("127.0.0.1", engine.port)) == "NOERROR"

    dropped = sink.last_for("dropped.example")
    assert (dropped.client, dropped.status, dropped.rcode) == ("127.0.0.2", "refused", "DROPPED")
    assert engine.stats.counters["refused_disallowed"] == 1


def test_the_refusals_are_in_the_metrics_per_reason(start):
    engine, _ = start(disallowed_clients=parse_networks("127.0.0.2", "D"))
    query_from("127.0.0.2", engine.port)

    text = generate_latest(metrics_registry(engine_stats=engine.stats)).decode()

    assert 'dns_engine_refused_total{reason="disallowed"} 1.0' in text
    assert 'dns_engine_refused_total{reason="not_allowed"} 0.0' in text
    assert 'dns_engine_refused_total{reason="rate_limited"} 0.0' in text
    assert 'dns_queries_total{status="refused"} 1.0' in text
    assert 'event="refused_' not in text  # not counted twice, as events too


def test_refused_queries_become_rows_with_their_own_status(start):
    engine, sink = start(disallowed_clients=parse_networks("127.0.0.2", "D"))
    query_from("127.0.0.2", engine.port, "refused.example")

    QueryLogWriter()(sink.wait_for(1))

    row = QueryLog.objects.get(domain="refused.example")
    assert (row.client, row.status, row.rcode, row.get_status_display()) == (
        "127.0.0.2", "refused", "REFUSED", "Refused: client not allowed",
    )  # fmt: skip
    assert QueryRollup.objects.get().status == DomainRollup.objects.get().status == "refused"


def test_the_history_page_filters_and_shows_the_new_statuses(staff_web):
    QueryLogWriter()(
        [
            make_entry(0, status="refused", domain="refused.example", rcode="REFUSED"),
            make_entry(1, status="ratelimited", domain="limited.example", rcode="REFUSED"),
            make_entry(2, status="forwarded", domain="fine.example"),
        ]
    )

    page = staff_web.get(reverse("querylog-history"), {"status": "ratelimited"}).content.decode()

    assert '<option value="refused">Refused: client not allowed</option>' in page
    assert '<option value="ratelimited" selected>Refused: rate limit</option>' in page
    assert 'class="badge st-ratelimited" title="Refused: rate limit">ratelimited<' in page
    assert "limited.example" in page and "refused.example" not in page and "fine.example" not in page
