"""DNS over TLS and over HTTPS to the upstreams: unbound (a real, independent server) and a
scriptable Python DoT server on loopback, with certificates made by the test."""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dnsengine.core.options import ConfigError, Upstream, parse_upstreams
from gloryhole_site.testing import unbound as unbound_server
from gloryhole_site.testing.dnsclient import Client, answers, rcode
from gloryhole_site.testing.tls_certs import TestCA
from gloryhole_site.testing.tls_upstream import TlsUpstream

NAME = "dns.test"
RECORDS = {"a.test.lan": "10.1.2.3", "b.test.lan": "10.1.2.4"}


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server_cert(ca):
    return ca.issue("server", [NAME])


@pytest.fixture(scope="module")
def unbound(ca, server_cert, tmp_path_factory):
    if not unbound_server.available():
        pytest.skip("unbound is not installed (make test installs it: apt-get install unbound)")
    directory = tmp_path_factory.mktemp("unbound")
    with unbound_server.Unbound(directory, server_cert.cert, server_cert.key, RECORDS) as server:
        yield server


@pytest.fixture
def tls_upstream(server_cert):
    with TlsUpstream(server_cert.cert, server_cert.key) as server:
        yield server


def engine_with(make_engine, engine_config, upstreams: str, timeout: float = 2.0):
    return make_engine(
        dataclasses.replace(engine_config, upstreams=parse_upstreams(upstreams), upstream_timeout=timeout)
    )


def wait_for(predicate, what: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


# -- the syntax -------------------------------------------------------------------------


def test_it_parses_tls_and_https_upstreams_beside_plain_ones_in_order():
    pin = base64.b64encode(bytes(range(32))).decode()
    parsed = parse_upstreams(
        f"tls://192.0.2.1#dns.example?ca=/etc/ca.pem, 192.0.2.2, https://[2001:db8::1]:8443/dns-query#doh.example?spki={pin}"
    )
    assert parsed == (
        Upstream("192.0.2.1", 853, "tls", "dns.example", "", "/etc/ca.pem"),
        Upstream("192.0.2.2", 53),
        Upstream("2001:db8::1", 8443, "https", "doh.example", "/dns-query", "", (bytes(range(32)),)),
    )
    assert [u.label for u in parsed] == [
        "tls://192.0.2.1:853#dns.example",
        "192.0.2.2:53",
        "https://[2001:db8::1]:8443/dns-query#doh.example",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "tls://dns.example",  # a name needs an upstream to resolve it: IP plus #name
        "https://192.0.2.1",  # no path
        "quic://192.0.2.1",
        "tls://192.0.2.1/dns-query",
        "tls://192.0.2.1?spki=short",
        "tls://192.0.2.1?pin=x",
        "tls://192.0.2.1#bad name",
        "tls://192.0.2.1:99999",
    ],
)
def test_it_refuses_a_malformed_encrypted_upstream(raw):
    with pytest.raises(ConfigError):
        parse_upstreams(raw)


def test_an_upstream_written_back_as_text_keeps_its_options():
    raw = f"tls://192.0.2.1#dns.example?ca=/etc/ca.pem&spki={base64.b64encode(b'p' * 32).decode()}"
    upstream = parse_upstreams(raw)[0]
    assert upstream.text == raw.replace("192.0.2.1", "192.0.2.1:853")
    assert parse_upstreams(upstream.text) == (upstream,)
    assert "?" not in upstream.label  # what logs and the query log show: no file paths


@pytest.mark.django_db
def test_a_forwarding_rule_keeps_the_ca_and_pins_of_its_upstreams():
    from dnsengine.models import ForwardingRule

    pin = base64.b64encode(b"p" * 32).decode()
    rule = ForwardingRule(domain="lan", upstreams=f" tls://192.0.2.1#dns.lan?ca=/etc/ca.pem&spki={pin} ,192.0.2.2")
    rule.full_clean()
    assert rule.upstreams == f"tls://192.0.2.1:853#dns.lan?ca=/etc/ca.pem&spki={pin}, 192.0.2.2:53"


def test_a_plain_only_setting_refuses_an_encrypted_upstream():
    with pytest.raises(ConfigError, match="only a plain resolver"):
        parse_upstreams("tls://192.0.2.1", "GLORYHOLE_CLIENT_PTR_RESOLVER", plain_only=True)


# -- answers through unbound --------------------------------------------------------------


@pytest.mark.integration
def test_it_answers_through_a_dot_upstream(make_engine, engine_config, unbound, ca):
    engine = engine_with(make_engine, engine_config, f"tls://127.0.0.1:{unbound.tls_port}#{NAME}?ca={ca.ca_file}")
    client = Client(engine.port)

    assert answers(client.query("a.test.lan")) == ["A 10.1.2.3"]
    assert answers(client.query("b.test.lan")) == ["A 10.1.2.4"]
    assert engine.stats.counters["upstream_tls_connects"] == 1  # the second query reused the connection


@pytest.mark.integration
def test_it_answers_through_a_doh_upstream(make_engine, engine_config, unbound, ca):
    engine = engine_with(
        make_engine, engine_config, f"https://127.0.0.1:{unbound.https_port}/dns-query#{NAME}?ca={ca.ca_file}"
    )
    client = Client(engine.port)

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda n: client.query(n), ["a.test.lan", "b.test.lan"] * 8))

    assert [answers(r) for r in replies] == [["A 10.1.2.3"], ["A 10.1.2.4"]] * 8
    assert engine.stats.counters["upstream_https_connects"] == 1


@pytest.mark.integration
def test_a_pinned_key_is_accepted_and_another_refused(make_engine, engine_config, unbound, ca, server_cert, caplog):
    good = f"tls://127.0.0.1:{unbound.tls_port}#{NAME}?ca={ca.ca_file}&spki={server_cert.spki}"
    engine = engine_with(make_engine, engine_config, good)
    assert answers(Client(engine.port).query("a.test.lan")) == ["A 10.1.2.3"]

    other_pin = base64.b64encode(b"\x01" * 32).decode()
    bad = f"tls://127.0.0.1:{unbound.tls_port}#{NAME}?ca={ca.ca_file}&spki={other_pin}"
    engine = engine_with(make_engine, engine_config, bad)
    with caplog.at_level(logging.WARNING, logger="dnsengine.core.upstream_tls"):
        assert rcode(Client(engine.port).query("a.test.lan")) == "SERVFAIL"
    assert engine.stats.counters["upstream_tls_verify_failures"] == 1
    assert "matches no spki= pin" in caplog.text


@pytest.mark.integration
def test_a_certificate_for_another_name_is_refused(make_engine, engine_config, unbound, ca, caplog):
    engine = engine_with(make_engine, engine_config, f"tls://127.0.0.1:{unbound.tls_port}#other.test?ca={ca.ca_file}")
    with caplog.at_level(logging.WARNING, logger="dnsengine.core.upstream_tls"):
        assert rcode(Client(engine.port).query("a.test.lan")) == "SERVFAIL"
    assert engine.stats.counters["upstream_tls_verify_failures"] == 1
    assert "certificate not accepted" in caplog.text
    assert "Hostname mismatch" in caplog.text


@pytest.mark.integration
def test_a_doh_server_without_the_ca_is_refused(make_engine, engine_config, unbound):
    # No ca=: the system trust store, which does not know the test's CA.
    engine = engine_with(make_engine, engine_config, f"https://127.0.0.1:{unbound.https_port}/dns-query#{NAME}")
    assert rcode(Client(engine.port).query("a.test.lan")) == "SERVFAIL"
    assert engine.stats.counters["upstream_https_verify_failures"] == 1
    assert "upstream_https_connects" not in engine.stats.counters


# -- the connection -------------------------------------------------------------------------


@pytest.mark.integration
def test_a_self_signed_server_is_refused_without_its_certificate(make_engine, engine_config, ca, tmp_path):
    own = ca.issue("selfsigned", [NAME], self_signed=True)
    with TlsUpstream(own.cert, own.key) as server:
        engine = engine_with(make_engine, engine_config, f"tls://127.0.0.1:{server.port}#{NAME}?ca={ca.ca_file}")
        assert rcode(Client(engine.port).query("a.test.lan")) == "SERVFAIL"
        assert engine.stats.counters["upstream_tls_verify_failures"] == 1
        assert server.queries == 0  # nothing was sent in clear text or otherwise


@pytest.mark.integration
def test_pipelined_queries_share_one_connection_and_are_matched_out_of_order(
    make_engine, engine_config, tls_upstream, ca
):
    tls_upstream.reverse_batch = 20  # holds the answers until 20 queries are in flight, then last first
    engine = engine_with(make_engine, engine_config, f"tls://127.0.0.1:{tls_upstream.port}#{NAME}?ca={ca.ca_file}")
    client = Client(engine.port)
    names = [f"q{i}.example.com" for i in range(20)]

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda n: client.query(n, timeout=5), names))

    assert [r.question[0].name.to_text() for r in replies] == [f"{n}." for n in names]
    assert all(answers(r) == ["A 192.0.2.53"] for r in replies)
    assert tls_upstream.connections == 1
    assert tls_upstream.most_in_flight == 20


@pytest.mark.integration
def test_it_reconnects_after_the_server_drops_the_connection(make_engine, engine_config, tls_upstream, ca):
    tls_upstream.drop_after = 1
    engine = engine_with(make_engine, engine_config, f"tls://127.0.0.1:{tls_upstream.port}#{NAME}?ca={ca.ca_file}")
    client = Client(engine.port)

    assert answers(client.query("one.example.com")) == ["A 192.0.2.53"]
    transport = engine.forwarder._transports[0]
    wait_for(lambda: transport._sock is None, "the engine did not notice the closed connection")
    assert answers(client.query("two.example.com")) == ["A 192.0.2.53"]
    assert tls_upstream.connections == 2
    assert engine.stats.counters["upstream_tls_connects"] == 2


@pytest.mark.integration
def test_a_dead_tls_upstream_fails_over_to_the_next_plain_one(make_engine, engine_config, upstream, ca):
    upstream.behaviour.address = "192.0.2.77"
    with TlsUpstream(ca.issue("gone", [NAME]).cert, ca.directory / "gone.key") as gone:
        dead_port = gone.port  # closed below: nothing listens there any more
    engine = engine_with(
        make_engine, engine_config, f"tls://127.0.0.1:{dead_port}#{NAME}?ca={ca.ca_file}, {upstream.address}"
    )
    client = Client(engine.port)

    started = time.monotonic()
    assert answers(client.query("first.example.com")) == ["A 192.0.2.77"]
    assert time.monotonic() - started < 1.0  # refused at once, not the 2 s timeout
    assert answers(client.query("second.example.com")) == ["A 192.0.2.77"]  # during the backoff: at once too
    assert engine.stats.counters["upstream_failover"] >= 2


@pytest.mark.integration
def test_a_query_the_server_closed_the_connection_on_goes_again_on_a_new_one(
    make_engine, engine_config, tls_upstream, ca
):
    tls_upstream.lose_after = 1  # answers one query, reads the next and closes without answering it
    engine = engine_with(make_engine, engine_config, f"tls://127.0.0.1:{tls_upstream.port}#{NAME}?ca={ca.ca_file}")
    client = Client(engine.port)

    assert answers(client.query("one.example.com")) == ["A 192.0.2.53"]
    assert answers(client.query("two.example.com")) == ["A 192.0.2.53"]  # its only upstream: no failover
    assert tls_upstream.connections == 2
    assert engine.stats.counters["upstream_tls_resent"] == 1
    assert "upstream_errors" not in engine.stats.counters


@pytest.mark.integration
def test_a_connection_idle_for_longer_than_the_timeout_is_reused(make_engine, engine_config, tls_upstream, ca):
    tls_upstream.delay = 0.2  # slow, but well within the timeout
    engine = engine_with(
        make_engine, engine_config, f"tls://127.0.0.1:{tls_upstream.port}#{NAME}?ca={ca.ca_file}", timeout=0.5
    )
    client = Client(engine.port)

    assert answers(client.query("one.example.com")) == ["A 192.0.2.53"]
    time.sleep(0.8)  # idle: nothing waits on the connection, so its silence is no failure
    assert answers(client.query("two.example.com")) == ["A 192.0.2.53"]
    assert tls_upstream.connections == 1
    assert "upstream_errors" not in engine.stats.counters


@pytest.mark.integration
def test_an_unreadable_ca_file_fails_the_upstream_with_a_clear_line(make_engine, engine_config, tmp_path, caplog):
    missing = tmp_path / "no-such-ca.pem"
    with caplog.at_level(logging.ERROR, logger="dnsengine.core.upstream_tls"):
        engine = engine_with(make_engine, engine_config, f"tls://127.0.0.1:1#{NAME}?ca={missing}")
    assert f"CA file '{missing}' not usable" in caplog.text

    assert rcode(Client(engine.port).query("a.test.lan")) == "SERVFAIL"


@pytest.mark.integration
def test_queries_on_a_connection_that_dies_fail_over_to_the_next_upstream(
    make_engine, engine_config, tls_upstream, upstream, ca
):
    tls_upstream.hang_up = True  # takes the connection and the query, closes without an answer
    upstream.behaviour.address = "192.0.2.77"
    engine = engine_with(
        make_engine, engine_config, f"tls://127.0.0.1:{tls_upstream.port}#{NAME}?ca={ca.ca_file}, {upstream.address}"
    )

    started = time.monotonic()
    assert answers(Client(engine.port).query("first.example.com")) == ["A 192.0.2.77"]
    assert time.monotonic() - started < 1.0  # at the close, not at the 2 s timeout
    assert tls_upstream.queries == 1
    assert engine.stats.counters["upstream_failover"] == 1


@pytest.mark.integration
def test_a_doh_error_status_fails_the_query_at_once(make_engine, engine_config, unbound, ca):
    engine = engine_with(
        make_engine, engine_config, f"https://127.0.0.1:{unbound.https_port}/no-such-path#{NAME}?ca={ca.ca_file}"
    )

    started = time.monotonic()
    assert rcode(Client(engine.port).query("a.test.lan")) == "SERVFAIL"
    assert time.monotonic() - started < 1.0  # the HTTP error, not the 2 s timeout
    assert engine.stats.counters["upstream_https_connects"] == 1
    assert engine.stats.counters["upstream_errors"] == 1
