"""The client-names thread (dnsengine.runtime.client_names): PTR lookups, the hosts file, the neighbour table."""

from __future__ import annotations

import os
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from dnslib import PTR, QTYPE, RR, DNSRecord

from dnsengine.core.clients import ClientDirectory
from dnsengine.core.options import parse_upstreams
from dnsengine.core.stats import EngineStats
from dnsengine.runtime.client_names import ClientNames, ClientNamesConfig, ptr_lookup
from dnsengine.runtime.metrics import EngineCollector
from gloryhole_site.testing.dnsclient import query_from
from gloryhole_site.testing.ptr_responder import PtrResponder
from gloryhole_site.testing.querylog import RecordingSink
from querylog.logger.writer import QueryLogWriter


def _resolver(responder: PtrResponder):
    return parse_upstreams(responder.address)[0]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- reverse lookups ---------------------------------------------------------------------


def test_a_ptr_lookup_returns_the_names_the_resolver_gives():
    with PtrResponder({"192.168.1.37": "annas-phone.lan", "2001:db8::7": "tv.lan"}) as router:
        names = ptr_lookup(["192.168.1.37", "2001:db8::7", "192.168.1.99"], _resolver(router), timeout=2)

    assert names == {"192.168.1.37": "annas-phone.lan", "2001:db8::7": "tv.lan", "192.168.1.99": ""}
    assert router.asked[0] == "37.1.168.192.in-addr.arpa"


def test_a_silent_resolver_costs_one_timeout_for_the_whole_batch():
    with PtrResponder(silent=True) as router:
        started = time.monotonic()
        names = ptr_lookup([f"10.0.0.{i}" for i in range(20)], _resolver(router), timeout=0.3)
        took = time.monotonic() - started

    assert names == {f"10.0.0.{i}": None for i in range(20)}
    assert took < 1.5
    assert len(router.asked) == 20


def test_hostile_and_mismatched_replies_are_ignored():
    def replies(data: bytes) -> list[bytes]:
        request = DNSRecord.parse(data)
        wrong_id = request.reply()
        wrong_id.header.id = (request.header.id + 1) & 0xFFFF
        wrong_id.add_answer(RR(request.q.qname, QTYPE.PTR, rdata=PTR("spoofed.lan."), ttl=60))
        wrong_question = DNSRecord.parse(data).reply()  # its own question: reply() shares the request's
        wrong_question.q.qname = "9.9.9.9.in-addr.arpa."
        wrong_question.add_answer(RR("9.9.9.9.in-addr.arpa.", QTYPE.PTR, rdata=PTR("spoofed.lan."), ttl=60))
        not_a_reply = DNSRecord.parse(data)
        right = request.reply()
        right.add_answer(RR(request.q.qname, QTYPE.PTR, rdata=PTR("real.lan."), ttl=60))
        return [b"\x00garbage", data[:5], wrong_id.pack(), wrong_question.pack(), not_a_reply.pack(), right.pack()]

    with PtrResponder() as router:
        router.replies = replies
        names = ptr_lookup(["10.0.0.1"], _resolver(router), timeout=2)

    assert names == {"10.0.0.1": "real.lan"}


def test_a_name_that_is_no_host_name_is_not_kept():
    with PtrResponder({"10.0.0.1": "bad name<script>", "10.0.0.2": "-leading-hyphen.lan"}) as router:
        names = ptr_lookup(["10.0.0.1", "10.0.0.2"], _resolver(router), timeout=2)

    assert names == {"10.0.0.1": "", "10.0.0.2": ""}


# --- one pass of the thread ----------------------------------------------------------------


def test_a_pass_names_new_clients_at_a_bounded_rate():
    clock = Clock()
    stats = EngineStats()
    directory = ClientDirectory(stats=stats)
    names = {f"10.0.0.{i}": f"host{i}.lan" for i in range(5)}
    with PtrResponder(names) as router:
        config = ClientNamesConfig(ptr_resolver=_resolver(router), ptr_per_second=2, ptr_timeout=2, arp_path="")
        worker = ClientNames(directory, config, clock=clock)
        for ip in names:
            directory.observe(ip)

        worker.step()
        first = sorted(ip for ip in names if directory.name_for(ip))
        clock.now += 1.0
        worker.step()
        second = sorted(ip for ip in names if directory.name_for(ip))
        clock.now += 10.0
        worker.step()

    assert first == ["10.0.0.0", "10.0.0.1"]
    assert len(second) == 4
    assert all(directory.name_for(ip) == name for ip, name in names.items())
    assert directory.source_for("10.0.0.3") == "ptr"
    assert stats.counters["client_ptr_lookups"] == 5


def test_ptr_names_are_asked_again_after_their_ttl():
    clock = Clock()
    directory = ClientDirectory()
    with PtrResponder({"10.0.0.1": "old.lan"}) as router:
        config = ClientNamesConfig(ptr_resolver=_resolver(router), ptr_ttl=100, refresh=10, arp_path="")
        worker = ClientNames(directory, config, clock=clock)
        directory.observe("10.0.0.1")
        worker.step()
        router.names = {"1.0.0.10.in-addr.arpa": "new.lan"}
        clock.now += 50
        worker.step()
        before_ttl = directory.name_for("10.0.0.1")
        clock.now += 60
        worker.step()

    assert before_ttl == "old.lan"
    assert directory.name_for("10.0.0.1") == "new.lan"
    assert len(router.asked) == 2


def test_failed_lookups_are_counted_and_keep_the_old_name():
    clock = Clock()
    stats = EngineStats()
    directory = ClientDirectory(stats=stats)
    directory.observe("10.0.0.1")
    directory.update(ptr={"10.0.0.1": "known.lan"})
    with PtrResponder(silent=True) as router:
        config = ClientNamesConfig(ptr_resolver=_resolver(router), ptr_timeout=0.1, arp_path="")
        ClientNames(directory, config, clock=clock).step()

    assert stats.counters["client_ptr_failures"] == 1
    assert directory.name_for("10.0.0.1") == "known.lan"


def test_the_hosts_file_is_read_again_when_it_changes(tmp_path):
    clock = Clock()
    hosts = tmp_path / "leases.hosts"
    hosts.write_text("192.168.1.10 phone\n")
    directory = ClientDirectory()
    worker = ClientNames(directory, ClientNamesConfig(hosts_file=str(hosts), refresh=60, arp_path=""), clock=clock)

    worker.step()
    first = directory.name_for("192.168.1.10")
    hosts.write_text("192.168.1.10 annas-phone\n")
    os.utime(hosts, (time.time() + 5, time.time() + 5))
    clock.now += 30
    worker.step()
    before_refresh = directory.name_for("192.168.1.10")
    clock.now += 31
    worker.step()

    assert first == "phone"
    assert before_refresh == "phone"
    assert directory.name_for("192.168.1.10") == "annas-phone"


def test_a_missing_hosts_file_keeps_the_names_read_before(tmp_path):
    clock = Clock()
    hosts = tmp_path / "leases.hosts"
    hosts.write_text("192.168.1.10 phone\n")
    directory = ClientDirectory()
    worker = ClientNames(directory, ClientNamesConfig(hosts_file=str(hosts), refresh=1, arp_path=""), clock=clock)
    worker.step()

    hosts.unlink()
    clock.now += 2
    worker.step()

    assert directory.name_for("192.168.1.10") == "phone"


def test_macs_come_from_the_neighbour_tables_and_name_a_client_by_mac(tmp_path):
    arp = tmp_path / "arp"
    arp.write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "192.168.1.37     0x1         0x2         aa:bb:cc:dd:ee:37     *        eth0\n"
    )
    neigh = tmp_path / "neigh.sh"
    neigh.write_text("#!/bin/sh\necho 'fe80::9 dev eth0 lladdr 11:22:33:44:55:66 REACHABLE'\n")
    neigh.chmod(0o755)
    directory = ClientDirectory()
    directory.set_configured({}, [], {"aa:bb:cc:dd:ee:37": "Anna's phone"})
    config = ClientNamesConfig(arp_path=str(arp), neigh_command=(str(neigh),))
    directory.observe("192.168.1.37")
    directory.observe("fe80::9%eth0")

    ClientNames(directory, config, clock=Clock()).step()

    assert directory.mac_for("192.168.1.37") == "aa:bb:cc:dd:ee:37"
    assert directory.name_for("192.168.1.37") == "Anna's phone"
    assert directory.mac_for("fe80::9%eth0") == "11:22:33:44:55:66"


def test_a_missing_neighbour_table_or_ip_command_is_skipped_quietly(tmp_path):
    config = ClientNamesConfig(arp_path=str(tmp_path / "none"), neigh_command=(str(tmp_path / "no-ip"),))

    assert ClientNames(ClientDirectory(), config).read_neighbours() == {}


def test_a_full_table_forgets_the_clients_nothing_names():
    clock = Clock()
    stats = EngineStats()
    directory = ClientDirectory(max_clients=3, stats=stats)
    worker = ClientNames(directory, ClientNamesConfig(max_clients=3, refresh=10, arp_path=""), clock=clock)
    directory.set_configured({"10.0.0.1": "named"}, [], {})
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):
        directory.observe(ip)
    worker.step()
    assert stats.counters["client_names_overflow"] == 1

    clock.now += 11
    worker.step()
    directory.observe("10.0.0.4")

    assert sorted(directory.known()) == ["10.0.0.1", "10.0.0.4"]


# --- settings and metrics ------------------------------------------------------------------


def test_a_bad_ptr_resolver_setting_is_refused_by_name(settings):
    settings.GLORYHOLE_CLIENT_PTR_RESOLVER = "router.lan"
    with pytest.raises(ImproperlyConfigured, match="GLORYHOLE_CLIENT_PTR_RESOLVER"):
        ClientNamesConfig.from_settings()

    settings.GLORYHOLE_CLIENT_PTR_RESOLVER = "192.168.1.1,192.168.1.2"
    with pytest.raises(ImproperlyConfigured, match="GLORYHOLE_CLIENT_PTR_RESOLVER"):
        ClientNamesConfig.from_settings()

    settings.GLORYHOLE_CLIENT_PTR_RESOLVER = "192.168.1.1"
    assert ClientNamesConfig.from_settings().ptr_resolver.label == "192.168.1.1:53"


def test_metrics_show_known_clients_and_names_by_source():
    directory = ClientDirectory()
    for ip in ("10.0.0.1", "10.0.0.2"):
        directory.observe(ip)
    directory.update(ptr={"10.0.0.1": "a.lan"})

    metrics = {m.name: m for m in EngineCollector(clients=directory).collect()}

    assert metrics["dns_clients_known"].samples[0].value == 2
    by_source = {s.labels["source"]: s.value for s in metrics["dns_client_names"].samples}
    assert by_source == {"configured": 0, "hosts": 0, "ptr": 1}


# --- the engine, over real sockets ---------------------------------------------------------


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.mark.django_db(transaction=True)
def test_a_ptr_name_reaches_the_directory_after_the_first_query_is_answered(settings, make_engine, engine_config):
    with PtrResponder({"127.0.0.2": "annas-phone.lan"}) as router:
        settings.GLORYHOLE_CLIENT_PTR_RESOLVER = router.address
        engine = make_engine(engine_config)

        reply = query_from("127.0.0.2", engine.port)
        name_at_first_answer = engine.clients.name_for("127.0.0.2")
        named = _wait_for(lambda: engine.clients.name_for("127.0.0.2") == "annas-phone.lan")

    assert reply.answer
    assert name_at_first_answer == ""
    assert named
    assert router.asked == ["2.0.0.127.in-addr.arpa"]
    assert engine.clients.source_for("127.0.0.2") == "ptr"
    assert engine.clients.name_for("127.0.0.3") == ""


@pytest.mark.django_db(transaction=True)
def test_a_silent_ptr_resolver_never_delays_an_answer(settings, make_engine, engine_config):
    with PtrResponder(silent=True) as router:
        settings.GLORYHOLE_CLIENT_PTR_RESOLVER = router.address
        settings.GLORYHOLE_CLIENT_PTR_TIMEOUT = 3.0
        engine = make_engine(engine_config)

        slowest = 0.0
        for i in range(2, 12):
            started = time.monotonic()
            reply = query_from(f"127.0.0.{i}", engine.port, timeout=2.0)
            slowest = max(slowest, time.monotonic() - started)
            assert reply.answer
        asked = _wait_for(lambda: len(router.asked) >= 1)
        # While a lookup waits on the silent resolver, the engine answers as fast as ever.
        started = time.monotonic()
        reply = query_from("127.0.0.20", engine.port, timeout=2.0)
        during_lookup = time.monotonic() - started

    assert asked
    assert reply.answer
    assert slowest < 1.0
    assert during_lookup < 1.0
    assert engine.clients.name_for("127.0.0.2") == ""


@pytest.mark.django_db(transaction=True)
def test_a_ptr_name_shows_in_the_history_with_the_clients_queries(settings, make_engine, engine_config, staff_web):
    sink = RecordingSink()
    with PtrResponder({"127.0.0.2": "annas-phone.lan"}) as router:
        settings.GLORYHOLE_CLIENT_PTR_RESOLVER = router.address
        engine = make_engine(engine_config, query_logger=sink)
        query_from("127.0.0.2", engine.port, "first.example.com")
        assert _wait_for(lambda: engine.clients.name_for("127.0.0.2") == "annas-phone.lan")
        query_from("127.0.0.2", engine.port, "second.example.com")
    QueryLogWriter()(sink.wait_for(2))

    page = staff_web.get(reverse("querylog-history"), {"client_name": "annas-phone.lan"}).content.decode()

    assert "annas-phone.lan" in page
    assert "second.example.com" in page
    assert "first.example.com" not in page  # asked before the name was known: logged without one
