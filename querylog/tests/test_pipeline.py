"""Every answered query becomes exactly one QueryLog row, through the real engine."""

from __future__ import annotations

import contextlib
import selectors
import signal
import socket
import threading
import time
from pathlib import Path

import dns.message
import pytest

from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, EngineStatus, LocalRecord
from dnsengine.services import config_generation_bump
from gloryhole_site.testing.dnsclient import Client
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.rundns import rundns_env, start_rundns
from querylog.logger.pool import QueryLogger
from querylog.models import QueryLog


def blast(port: int, names: list[str], window: int = 100, timeout: float = 10.0) -> int:
    """Send UDP queries keeping at most `window` unanswered; returns how many were answered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sent = answered = 0
    deadline = time.monotonic() + timeout
    while answered < len(names) and time.monotonic() < deadline:
        while sent < len(names) and sent - answered < window:
            sock.sendto(dns.message.make_query(names[sent], "A").to_wire(), ("127.0.0.1", port))
            sent += 1
        if sel.select(timeout=0.2):
            while True:
                try:
                    sock.recv(4096)
                    answered += 1
                except BlockingIOError:
                    break
    sock.close()
    return answered


@pytest.fixture
def logged_engine(make_engine, engine_config):
    query_logger = QueryLogger(50000, 1, 500, 0.05, "test-engine").start()
    engine = make_engine(engine_config, query_logger=query_logger)
    yield engine, query_logger
    query_logger.close(timeout=10)


def engine_reports(proc, timeout: float, **fields) -> bool:
    """Wait until the engine's heartbeat row shows `fields` (signals coalesce: a test waits
    for one swap to show before it sends the next)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if EngineStatus.objects.filter(pid=proc.pid, **fields).exists():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.integration
def test_every_answered_query_becomes_exactly_one_row(logged_engine):
    engine, query_logger = logged_engine
    names = [f"n{i % 700}.example.com" for i in range(5000)]  # misses first, then cache hits
    answered = blast(engine.port, names)
    engine.stop()
    report = query_logger.close(timeout=20)
    assert answered == 5000
    assert report.written == 5000 and report.dropped == 0
    assert QueryLog.objects.count() == 5000
    assert QueryLog.objects.filter(status="forwarded").count() == 700
    assert QueryLog.objects.filter(status="cached").count() == 4300


def test_each_decision_path_is_logged_with_its_reason(logged_engine):
    engine, query_logger = logged_engine
    blocklist = Blocklist.objects.create(name="ads")
    BlockedDomain.objects.create(blocklist=blocklist, domain="ads.example.net")
    AllowedDomain.objects.create(domain="ok.ads.example.net")
    LocalRecord.objects.create(name="nas.home", type="A", value="192.168.1.5")
    config_generation_bump()
    engine_reload(engine)
    client = Client(engine.port)
    client.query("x.ads.example.net")
    client.query("ok.ads.example.net", "AAAA")
    client.query("nas.home")
    client.query("fwd.example.com", tcp=True)
    client.query("fwd.example.com")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a question nobody can read
        sock.settimeout(2)
        bad = bytearray(dns.message.make_query("example.com", "A").to_wire())
        bad[12:14] = b"\xc0\x0c"
        sock.sendto(bytes(bad), ("127.0.0.1", engine.port))
        sock.recv(512)
    engine.stop()
    query_logger.close(timeout=10)

    rows = {r.domain: r for r in QueryLog.objects.exclude(status__in=["cached", "error"])}
    blocked = rows["x.ads.example.net"]
    assert (blocked.status, blocked.rule, blocked.rcode, blocked.qtype) == ("blocked", "list:ads", "NOERROR", "A")
    allowed = rows["ok.ads.example.net"]
    assert (allowed.status, allowed.rule, allowed.qtype) == ("allowed", "allow:ok.ads.example.net", "AAAA")
    assert allowed.upstream.startswith("127.0.0.1:")
    assert (rows["nas.home"].status, rows["nas.home"].rule) == ("local", "local")
    forwarded = rows["fwd.example.com"]
    assert (forwarded.protocol, forwarded.upstream, forwarded.client) == ("tcp", engine.config.upstreams[0].label,
                                                                          "127.0.0.1")  # fmt: skip
    cached = QueryLog.objects.get(status="cached")
    assert (cached.domain, cached.protocol) == ("fwd.example.com", "udp")
    error = QueryLog.objects.get(status="error")
    assert (error.rcode, error.domain) == ("FORMERR", "")
    assert all(r.engine == "test-engine" for r in QueryLog.objects.all())
    assert all(r.duration_us > 0 for r in QueryLog.objects.exclude(status="error"))


@pytest.mark.integration
def test_the_thread_count_stays_fixed_under_load_with_logging(logged_engine):
    engine, _ = logged_engine
    blast(engine.port, [f"warm{i}.example.com" for i in range(50)])
    before = threading.active_count()
    assert blast(engine.port, [f"t{i % 300}.example.com" for i in range(4000)]) == 4000
    assert threading.active_count() == before


# --- rundns as a user runs it ----------------------------------------------------------


def _env(upstream, tmp_path) -> dict[str, str]:
    return rundns_env(
        upstream.address,
        GLORYHOLE_ENV_FILE=str(tmp_path / "gloryhole.env"),
        GLORYHOLE_QUERY_LOG_FLUSH_INTERVAL="0.05",
    )


def _load_in_background(port: int, stop: threading.Event, counts: list[int]) -> threading.Thread:
    def run():
        i = 0
        while not stop.is_set():
            counts.append(blast(port, [f"load{(i + k) % 400}.example.com" for k in range(200)], window=50))
            i += 200

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def child_pids(pid: int) -> set[int]:
    """The processes `pid` started (Linux: /proc/PID/task/*/children)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found.update(int(c) for c in (task / "children").read_text().split())
    return found


def wait_until(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie has exited
    except FileNotFoundError:
        return True


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["pool", "process"])
def test_sigterm_under_load_leaves_one_row_per_answered_query(upstream, tmp_path, mode):
    proc, port = start_rundns({**_env(upstream, tmp_path), "GLORYHOLE_QUERY_LOG_MODE": mode})
    stop, counts = threading.Event(), []
    loader = _load_in_background(port, stop, counts)
    time.sleep(1.5)
    writers = child_pids(proc.pid)
    assert len(writers) == (1 if mode == "process" else 0)
    proc.send_signal(signal.SIGTERM)  # while queries are still arriving
    out = proc.communicate(timeout=60)[0]
    stop.set()
    loader.join()
    assert proc.returncode == 0, out
    answered = sum(counts)
    assert answered > 500
    assert QueryLog.objects.count() == answered
    assert f"query log: {answered} written, 0 dropped, 0 unwritten" in out
    assert all(gone(pid) for pid in writers)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_sighup_moves_the_log_into_and_out_of_writer_processes_without_losing_an_entry(upstream, tmp_path):
    env_file = tmp_path / "gloryhole.env"
    env_file.write_text("GLORYHOLE_QUERY_LOG_MODE=process\n")
    env = {**_env(upstream, tmp_path), "GLORYHOLE_HEARTBEAT_INTERVAL": "0.2"}
    proc, port = start_rundns(env)

    try:
        first = blast(port, [f"a{i}.example.com" for i in range(1000)])
        assert engine_reports(proc, 30, mode="process", workers=1)
        assert len(child_pids(proc.pid)) == 1
        env_file.write_text("GLORYHOLE_QUERY_LOG_MODE=pool\n")
        proc.send_signal(signal.SIGHUP)
        second = blast(port, [f"b{i}.example.com" for i in range(1000)])
        assert engine_reports(proc, 30, mode="pool")
        # The old logger drains, then its child exits and is reaped.
        assert wait_until(lambda: not child_pids(proc.pid))
        env_file.write_text("GLORYHOLE_QUERY_LOG_MODE=process\nGLORYHOLE_QUERY_LOG_WORKERS=2\n")
        proc.send_signal(signal.SIGHUP)
        assert engine_reports(proc, 30, mode="process", workers=2)
        third = blast(port, [f"c{i}.example.com" for i in range(1000)])
        writers = child_pids(proc.pid)
        assert len(writers) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert QueryLog.objects.count() == first + second + third == 3000
    assert "query log: 3000 written, 0 dropped, 0 unwritten" in out
    assert all(gone(pid) for pid in writers)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_writer_process_exits_when_the_engine_is_killed(upstream, tmp_path):
    proc, port = start_rundns({**_env(upstream, tmp_path), "GLORYHOLE_QUERY_LOG_MODE": "process"})
    try:
        assert blast(port, [f"k{i}.example.com" for i in range(200)]) == 200
        (writer,) = wait_until(lambda: child_pids(proc.pid))
    finally:
        proc.kill()  # no drain: the child sees the end of its pipe
        proc.communicate(timeout=30)
    assert wait_until(lambda: gone(writer))


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_sighup_switches_mode_and_workers_without_losing_an_entry(upstream, tmp_path):
    env_file = tmp_path / "gloryhole.env"
    env_file.write_text("GLORYHOLE_QUERY_LOG_WORKERS=1\n")
    env = _env(upstream, tmp_path)
    env["GLORYHOLE_HEARTBEAT_INTERVAL"] = "0.2"
    proc, port = start_rundns(env)

    try:
        first = blast(port, [f"a{i}.example.com" for i in range(1000)])
        env_file.write_text("GLORYHOLE_QUERY_LOG_WORKERS=2\nGLORYHOLE_QUERY_LOG_BUFFER=20000\n")
        proc.send_signal(signal.SIGHUP)
        second = blast(port, [f"b{i}.example.com" for i in range(1000)])
        assert engine_reports(proc, 15, mode="pool", workers=2, buffer_capacity=20000)
        env_file.write_text("GLORYHOLE_QUERY_LOG_MODE=thread\n")
        proc.send_signal(signal.SIGHUP)
        assert engine_reports(proc, 15, mode="thread")
        third = blast(port, [f"c{i}.example.com" for i in range(300)], window=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "query log now mode=pool workers=2 buffer=20000" in out
    assert "query log now mode=thread" in out
    assert QueryLog.objects.count() == first + second + third == 2300
