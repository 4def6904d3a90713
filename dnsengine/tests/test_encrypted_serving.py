"""DoT and DoH for the clients, through real TLS sockets on loopback with certificates made here."""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import dns.message
import dns.query
import pytest

from dnsengine.core.access import parse_networks
from dnsengine.models import BlockedDomain, Blocklist, Client, ClientGroup
from dnsengine.services import config_generation_bump
from gloryhole_site.testing.dnsclient import answers, rcode
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.rundns import rundns_env, start_rundns
from gloryhole_site.testing.tls import (
    doh_query,
    dot_query,
    framed,
    h2_exchange,
    make_certificate,
    read_framed,
    tls_connect,
)

pytestmark = pytest.mark.integration

UPSTREAM_A = ["A 192.0.2.1"]
BLOCKED_A = ["A 0.0.0.0"]
QUERY_B64 = base64.urlsafe_b64encode(dns.message.make_query("example.com", "A").to_wire()).rstrip(b"=")


class Sink:
    def __init__(self) -> None:
        self.entries = []

    def log_async(self, entry) -> bool:
        self.entries.append(entry)
        return True


@pytest.fixture
def certificate(tmp_path):
    return make_certificate(tmp_path)


@pytest.fixture
def tls_config(engine_config, certificate):
    cert, key = certificate
    return dataclasses.replace(engine_config, tls_cert=str(cert), tls_key=str(key), dot_port=0, doh_port=0,
                               tls_handshake_timeout=1.0)  # fmt: skip


def wait_for(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def closed_by_server(sock, timeout: float = 5.0) -> bool:
    """Does the server close `sock` within `timeout` (reading returns EOF or fails)?"""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:  # what comes first (a TLS alert, say) does not matter
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            if sock.recv(4096) == b"":
                return True
    except (ssl.SSLError, ConnectionError):
        return True
    except TimeoutError:
        pass
    return False


# --- DoT --------------------------------------------------------------------------------


def test_it_answers_over_dot_and_logs_the_protocol_as_dot(make_engine, tls_config, certificate):
    sink = Sink()
    engine = make_engine(tls_config, query_logger=sink)

    reply = dot_query(engine.dot.port, certificate[0])

    assert answers(reply) == UPSTREAM_A
    wait_for(lambda: sink.entries)
    assert [e.protocol for e in sink.entries] == ["dot"]


def test_dot_answers_pipelined_queries_on_one_connection(make_engine, tls_config, certificate):
    engine = make_engine(tls_config)
    with tls_connect(engine.dot.port, certificate[0]) as sock:
        queries = [dns.message.make_query(f"n{i}.example", "A") for i in range(5)]
        sock.sendall(b"".join(framed(q) for q in queries))
        replies = {r.id: r for r in (read_framed(sock) for _ in queries)}
    assert sorted(replies) == sorted(q.id for q in queries)
    assert all(answers(r) == UPSTREAM_A for r in replies.values())


def test_dot_applies_the_clients_group_by_its_source_address(make_engine, tls_config, certificate):
    kids = ClientGroup.objects.create(name="kids")
    blocklist = Blocklist.objects.create(name="social")
    BlockedDomain.objects.create(blocklist=blocklist, domain="social.example")
    blocklist.groups.set([kids])
    Client.objects.create(name="tablet", ip="127.0.0.2", group=kids)
    config_generation_bump()
    engine = make_engine(tls_config)
    engine_reload(engine)

    assert answers(dot_query(engine.dot.port, certificate[0], "social.example", source="127.0.0.2")) == BLOCKED_A
    assert answers(dot_query(engine.dot.port, certificate[0], "social.example", source="127.0.0.3")) == UPSTREAM_A


def test_dot_refuses_a_disallowed_client(make_engine, tls_config, certificate):
    config = dataclasses.replace(tls_config, disallowed_clients=parse_networks("127.0.0.2", "test"))
    engine = make_engine(config)

    assert rcode(dot_query(engine.dot.port, certificate[0], source="127.0.0.2")) == "REFUSED"
    assert answers(dot_query(engine.dot.port, certificate[0], source="127.0.0.3")) == UPSTREAM_A


def test_dot_holds_no_more_connections_than_its_bound(make_engine, tls_config, certificate, upstream):
    upstream.behaviour.mode = "silent"  # answers never come: every connection has a query in flight
    config = dataclasses.replace(tls_config, tcp_max_connections=2, tcp_max_per_client=2, upstream_timeout=2.0)
    engine = make_engine(config)
    port = engine.dot.port
    busy = []
    for _ in range(2):  # each with a query in flight: not idle, so not evicted
        sock = tls_connect(port, certificate[0])
        sock.sendall(framed(dns.message.make_query("example.com", "A")))
        busy.append(sock)
    wait_for(lambda: len(engine.dot.listener.connections) == 2)
    try:
        third = socket.create_connection(("127.0.0.1", port), timeout=3)
        assert closed_by_server(third)
        third.close()
        assert engine.stats.counters.get("dot_connections_refused") == 1
        assert len(engine.dot.listener.connections) == 2
    finally:
        for sock in busy:
            sock.close()


def test_dot_closes_an_idle_connection(make_engine, tls_config, certificate):
    engine = make_engine(dataclasses.replace(tls_config, tcp_idle_timeout=0.5, tls_handshake_timeout=10.0))
    with tls_connect(engine.dot.port, certificate[0]) as idle:
        assert closed_by_server(idle, timeout=3.0)
    assert engine.stats.counters.get("dot_idle_closed") == 1
    assert answers(dot_query(engine.dot.port, certificate[0])) == UPSTREAM_A


def test_dot_closes_a_connection_that_never_finishes_its_handshake(make_engine, tls_config, certificate):
    engine = make_engine(dataclasses.replace(tls_config, tcp_idle_timeout=30.0, tls_handshake_timeout=0.5))
    with socket.create_connection(("127.0.0.1", engine.dot.port), timeout=3) as silent:  # never says hello
        assert closed_by_server(silent, timeout=3.0)
    assert engine.stats.counters.get("dot_handshake_timeouts") == 1
    assert answers(dot_query(engine.dot.port, certificate[0])) == UPSTREAM_A


def test_a_bad_handshake_does_not_stop_the_listener(make_engine, tls_config, certificate):
    engine = make_engine(tls_config)
    with socket.create_connection(("127.0.0.1", engine.dot.port), timeout=3) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello this is not TLS" * 4)
        assert closed_by_server(sock)
    with pytest.raises(ssl.SSLError):  # a client that does not trust the server's certificate
        tls_connect(engine.dot.port, make_certificate(certificate[0].parent, stem="other")[0]).close()
    assert answers(dot_query(engine.dot.port, certificate[0])) == UPSTREAM_A


def peer_certificate(port: int, cafile=None) -> bytes:
    """The certificate a new connection is served (checked against `cafile` when given)."""
    if cafile is not None:
        with tls_connect(port, cafile) as sock:
            return sock.getpeercert(binary_form=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=3)) as sock:
        return sock.getpeercert(binary_form=True)


def test_a_new_certificate_is_used_after_sighup_without_a_restart(make_engine, tls_config, certificate, tmp_path):
    engine = make_engine(tls_config)
    cert, key = certificate
    before = peer_certificate(engine.dot.port, cert)
    new_cert, new_key = make_certificate(tmp_path, stem="renewed")
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)

    engine.tls_reload()  # what rundns does on SIGHUP

    after = peer_certificate(engine.dot.port, new_cert)
    assert after != before
    assert after == ssl.PEM_cert_to_DER_cert(new_cert.read_text())


def test_a_changed_certificate_file_is_noticed_without_sighup(make_engine, tls_config, certificate, tmp_path):
    engine = make_engine(dataclasses.replace(tls_config, tls_check_interval=0.1))
    cert, key = certificate
    new_cert, new_key = make_certificate(tmp_path, stem="renewed")
    shutil.copy(new_key, key)
    shutil.copy(new_cert, cert)
    wait_for(lambda: engine.dot.certificate.reloads >= 1)

    assert peer_certificate(engine.dot.port, new_cert) == ssl.PEM_cert_to_DER_cert(new_cert.read_text())


def test_a_broken_certificate_file_keeps_the_previous_one(make_engine, tls_config, certificate):
    engine = make_engine(tls_config)
    cert, _key = certificate
    good = cert.read_text()
    cert.write_text("not a certificate\n")
    engine.tls_reload()

    assert peer_certificate(engine.dot.port, client_cafile(good, cert.parent)) == ssl.PEM_cert_to_DER_cert(good)
    assert answers(dot_query(engine.dot.port, cert.parent / "good.pem")) == UPSTREAM_A


def client_cafile(pem: str, directory):
    path = directory / "good.pem"
    path.write_text(pem)
    return path


# --- DoH --------------------------------------------------------------------------------


@pytest.mark.parametrize("http2", [False, True], ids=["HTTP/1.1", "HTTP/2"])
@pytest.mark.parametrize("post", [True, False], ids=["POST", "GET"])
def test_it_answers_over_doh_and_logs_the_protocol_as_doh(make_engine, tls_config, certificate, post, http2):
    sink = Sink()
    engine = make_engine(tls_config, query_logger=sink)

    reply = doh_query(engine.doh.port, certificate[0], post=post, http2=http2)

    assert answers(reply) == UPSTREAM_A
    wait_for(lambda: sink.entries)
    assert [e.protocol for e in sink.entries] == ["doh"]


def https_request(port: int, cafile, request: bytes) -> bytes:
    """Send raw HTTP over TLS; everything the server sends until it closes (or 3 s)."""
    with tls_connect(port, cafile) as sock:
        sock.sendall(request)
        sock.settimeout(3)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
        return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_doh_sets_content_type_and_max_age_from_the_answers_ttl(make_engine, tls_config, certificate):
    engine = make_engine(tls_config)
    query = base64.urlsafe_b64encode(dns.message.make_query("example.com", "A").to_wire()).rstrip(b"=")
    request = b"GET /dns-query?dns=" + query + b" HTTP/1.1\r\nHost: dns.test\r\nConnection: close\r\n\r\n"
    response = https_request(engine.doh.port, certificate[0], request)
    head, _, body = response.partition(b"\r\n\r\n")
    assert status_of(response) == 200
    assert b"content-type: application/dns-message" in head.lower()
    assert b"cache-control: max-age=300" in head.lower()  # the fake upstream's TTL
    assert answers(dns.message.from_wire(body)) == UPSTREAM_A


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        # A query that would decode if the stray characters were skipped, as a lenient decoder does.
        (b"GET /dns-query?dns=" + QUERY_B64[:8] + b"**" + QUERY_B64[8:] + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /dns-query HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /dns-query?dns=AAAA HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # 3 bytes: not a DNS message
        (b"POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi", 415),
        (b"POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\n"
         b"Content-Length: 100000\r\n\r\n", 413),
        (b"GET /dns-query?dns=" + b"A" * 8000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 413),
        (b"PUT /dns-query HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"this is not http\r\n\r\n", 400),
    ],
    ids=["bad-base64", "no-dns-param", "too-short", "wrong-type", "too-large-post", "too-large-get", "put",
         "other-path", "not-http"],
)  # fmt: skip
def test_doh_answers_a_malformed_request_with_an_http_error_and_keeps_serving(
    make_engine, tls_config, certificate, request_bytes, status
):
    engine = make_engine(tls_config)
    response = https_request(engine.doh.port, certificate[0], request_bytes)
    assert status_of(response) == status
    assert answers(doh_query(engine.doh.port, certificate[0])) == UPSTREAM_A


def h2_head(method: bytes, path: bytes, *extra) -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":path", path), (b":scheme", b"https"), (b":authority", b"dns.test"), *extra]


def test_doh_over_http2_answers_streams_at_once_and_fails_only_the_bad_one(make_engine, tls_config, certificate):
    engine = make_engine(tls_config)
    query = dns.message.make_query("example.com", "A").to_wire()
    get_query = base64.urlsafe_b64encode(query).rstrip(b"=")
    dns_type = (b"content-type", b"application/dns-message")

    results = h2_exchange(engine.doh.port, certificate[0], [
        (h2_head(b"POST", b"/dns-query", dns_type), query),
        (h2_head(b"POST", b"/dns-query", (b"content-type", b"text/plain")), b"hello"),
        (h2_head(b"GET", b"/dns-query?dns=" + get_query), b""),
        (h2_head(b"GET", b"/elsewhere"), b""),
        (h2_head(b"POST", b"/dns-query", dns_type), b"short"),
    ])  # fmt: skip

    assert [status for status, _ in results] == [200, 415, 200, 404, 400]
    assert answers(dns.message.from_wire(results[0][1])) == UPSTREAM_A
    assert answers(dns.message.from_wire(results[2][1])) == UPSTREAM_A
    assert answers(doh_query(engine.doh.port, certificate[0], http2=True)) == UPSTREAM_A


def doh_post_raw(port: int, cafile, name: str, *, headers: bytes = b"", source=None) -> bytes:
    """One HTTP/1.1 POST from `source` (any 127.0.0.x), with extra header lines: the whole response."""
    wire = dns.message.make_query(name, "A").to_wire()
    with tls_connect(port, cafile, source=source) as sock:
        sock.sendall(b"POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\n" + headers
                     + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(wire) + wire)  # fmt: skip
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def doh_post(port: int, cafile, name: str, *, headers: bytes = b"", source=None) -> dns.message.Message:
    data = doh_post_raw(port, cafile, name, headers=headers, source=source)
    assert status_of(data) == 200, data
    return dns.message.from_wire(data.partition(b"\r\n\r\n")[2])


def test_doh_answers_403_when_a_refused_client_is_dropped(make_engine, tls_config, certificate):
    config = dataclasses.replace(tls_config, disallowed_clients=parse_networks("127.0.0.2", "test"),
                                 refused_clients_action="drop")  # fmt: skip
    engine = make_engine(config)

    assert status_of(doh_post_raw(engine.doh.port, certificate[0], "example.com", source="127.0.0.2")) == 403
    assert answers(doh_post(engine.doh.port, certificate[0], "example.com", source="127.0.0.3")) == UPSTREAM_A


def test_doh_applies_the_clients_group_by_its_source_address(make_engine, tls_config, certificate):
    kids = ClientGroup.objects.create(name="kids")
    blocklist = Blocklist.objects.create(name="social")
    BlockedDomain.objects.create(blocklist=blocklist, domain="social.example")
    blocklist.groups.set([kids])
    Client.objects.create(name="tablet", ip="127.0.0.2", group=kids)
    config_generation_bump()
    engine = make_engine(tls_config)
    engine_reload(engine)

    assert answers(doh_post(engine.doh.port, certificate[0], "social.example", source="127.0.0.2")) == BLOCKED_A
    assert answers(doh_post(engine.doh.port, certificate[0], "social.example", source="127.0.0.3")) == UPSTREAM_A


def test_doh_believes_x_forwarded_for_only_from_a_trusted_proxy(make_engine, tls_config, certificate):
    config = dataclasses.replace(tls_config, trusted_proxies=parse_networks("127.0.0.1", "test"),
                                 disallowed_clients=parse_networks("192.0.2.66", "test"))  # fmt: skip
    sink = Sink()
    engine = make_engine(config, query_logger=sink)

    def post(headers: bytes, source=None) -> dns.message.Message:
        return doh_post(engine.doh.port, certificate[0], "example.com", headers=headers, source=source)

    assert rcode(post(b"X-Forwarded-For: 192.0.2.66\r\n")) == "REFUSED"
    assert rcode(post(b"X-Forwarded-For: 192.0.2.66, 192.0.2.7\r\n")) == "NOERROR"  # the right-most is the client
    assert rcode(post(b"X-Forwarded-For: 192.0.2.66\r\n", source="127.0.0.2")) == "NOERROR"  # not a trusted proxy
    wait_for(lambda: len(sink.entries) == 3)
    assert [e.client for e in sink.entries] == ["192.0.2.66", "192.0.2.7", "127.0.0.2"]


# --- kdig, an independent client -----------------------------------------------------------


@pytest.mark.skipif(shutil.which("kdig") is None, reason="kdig missing: make kdig (apt-get install knot-dnsutils)")
@pytest.mark.parametrize("transport", ["+tls", "+https"])
def test_kdig_gets_answers_over_dot_and_doh(make_engine, tls_config, certificate, transport):
    engine = make_engine(tls_config)
    port = engine.dot.port if transport == "+tls" else engine.doh.port
    result = subprocess.run(
        ["kdig", "@127.0.0.1", "-p", str(port), transport, f"+tls-ca={certificate[0]}", "+tls-hostname=dns.test",
         "+timeout=3", "+retry=0", "example.com", "A"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert "status: NOERROR" in result.stdout, result.stdout + result.stderr
    assert "192.0.2.1" in result.stdout


# --- rundns: SIGHUP ---------------------------------------------------------------------------


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def same_size_and_time(path, content: bytes, size: int) -> None:
    """Write `content`, padded to `size`, over `path` in place, keeping its inode and mtime.

    The file check compares (mtime, size, inode): unchanged, only a SIGHUP can make the
    engine read the new pair. PEM readers skip text outside BEGIN/END, so padding is harmless.
    """
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.write(content + b"\n" * (size - len(content)))
        handle.truncate()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.django_db(transaction=True)
def test_rundns_serves_dot_and_takes_a_renewed_certificate_on_sighup(upstream, tmp_path):
    cert, key = make_certificate(tmp_path, stem="live")
    new_cert, new_key = make_certificate(tmp_path, stem="renewed")
    sizes = {}
    for live, renewed in ((cert, new_cert), (key, new_key)):
        sizes[live] = max(live.stat().st_size, renewed.stat().st_size) + 16
        same_size_and_time(live, live.read_bytes(), sizes[live])
    dot_port = free_tcp_port()
    env = rundns_env(upstream.address, GLORYHOLE_TLS_CERT=str(cert), GLORYHOLE_TLS_KEY=str(key),
                     GLORYHOLE_DOT_PORT=str(dot_port), GLORYHOLE_DOH_PORT="0")  # fmt: skip
    proc, _port = start_rundns(env)
    try:
        old_der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        assert peer_certificate(dot_port, cert) == old_der
        assert answers(dot_query(dot_port, cert)) == UPSTREAM_A
        new_der = ssl.PEM_cert_to_DER_cert(new_cert.read_text())
        same_size_and_time(cert, new_cert.read_bytes(), sizes[cert])
        same_size_and_time(key, new_key.read_bytes(), sizes[key])

        proc.send_signal(signal.SIGHUP)

        deadline = time.monotonic() + 5
        while peer_certificate(dot_port) != new_der:
            assert time.monotonic() < deadline, "the renewed certificate was not served after SIGHUP"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, rest
