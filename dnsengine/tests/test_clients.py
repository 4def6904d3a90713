"""The client directory (dnsengine.core.clients) and the parsers of what names clients."""

from __future__ import annotations

import threading

import pytest

from dnsengine.core.clients import (
    ClientDirectory,
    clean_hostname,
    parse_hosts,
    parse_ip_neigh,
    parse_proc_arp,
)
from dnsengine.core.stats import EngineStats

# --- the directory -------------------------------------------------------------------


def test_a_new_client_is_queued_once_and_has_no_name_yet():
    directory = ClientDirectory()

    directory.observe("192.168.1.5")
    directory.observe("192.168.1.5")

    assert directory.name_for("192.168.1.5") == ""
    assert directory.take_new(10) == ["192.168.1.5"]
    assert directory.take_new(10) == []


def test_a_user_given_name_wins_over_the_hosts_file_and_ptr():
    directory = ClientDirectory()
    directory.observe("192.168.1.5")
    directory.update(hosts={"192.168.1.5": "from-hosts"}, ptr={"192.168.1.5": "from-ptr"})
    assert (directory.name_for("192.168.1.5"), directory.source_for("192.168.1.5")) == ("from-hosts", "hosts")

    directory.set_configured({"192.168.1.5": "Anna's phone"}, [], {})

    assert (directory.name_for("192.168.1.5"), directory.source_for("192.168.1.5")) == ("Anna's phone", "configured")


def test_the_hosts_file_wins_over_ptr_and_ptr_is_used_last():
    directory = ClientDirectory()
    for ip in ("10.0.0.1", "10.0.0.2"):
        directory.observe(ip)

    directory.update(hosts={"10.0.0.1": "printer"}, ptr={"10.0.0.1": "p.lan", "10.0.0.2": "tv.lan"})

    assert directory.name_for("10.0.0.1") == "printer"
    assert (directory.name_for("10.0.0.2"), directory.source_for("10.0.0.2")) == ("tv.lan", "ptr")


def test_configured_names_go_by_ip_then_longest_cidr_then_mac():
    directory = ClientDirectory()
    for ip in ("192.168.1.5", "192.168.1.6", "192.168.2.9", "10.1.1.1", "2001:db8::7"):
        directory.observe(ip)
    directory.update(neighbours={"10.1.1.1": "aa:bb:cc:dd:ee:ff", "192.168.1.6": "11:22:33:44:55:66"})

    directory.set_configured(
        {"192.168.1.5": "by-ip"},
        [("192.168.0.0/16", "home"), ("192.168.1.0/24", "kids"), ("2001:db8::/64", "v6-net"), ("bad", "x")],
        {"AA-BB-CC-DD-EE-FF": "by-mac", "11:22:33:44:55:66": "mac-loses-to-cidr"},
    )

    assert directory.name_for("192.168.1.5") == "by-ip"
    assert directory.name_for("192.168.1.6") == "kids"
    assert directory.name_for("192.168.2.9") == "home"
    assert directory.name_for("10.1.1.1") == "by-mac"
    assert directory.mac_for("10.1.1.1") == "aa:bb:cc:dd:ee:ff"
    assert directory.name_for("2001:db8::7") == "v6-net"


def test_a_name_given_by_ip_is_there_before_the_client_asks():
    directory = ClientDirectory()

    directory.set_configured({"192.168.1.9": "nas"}, [], {})
    directory.update(hosts={"192.168.1.10": "tv"})

    assert directory.name_for("192.168.1.9") == "nas"
    assert directory.name_for("192.168.1.10") == "tv"


def test_the_version_moves_only_when_a_name_or_mac_changes():
    directory = ClientDirectory()
    directory.observe("10.0.0.1")
    start = directory.version

    directory.update(ptr={"10.0.0.1": "a.lan"})
    after_name = directory.version
    directory.update(ptr={"10.0.0.1": "a.lan"})
    directory.update(hosts={})
    unchanged = directory.version
    directory.update(neighbours={"10.0.0.1": "aa:bb:cc:dd:ee:ff"})
    after_mac = directory.version
    directory.update(ptr={"10.0.0.1": ""})

    assert after_name == start + 1
    assert unchanged == after_name
    assert after_mac == after_name + 1
    assert directory.version == after_mac + 1
    assert directory.name_for("10.0.0.1") == ""


def test_new_dicts_are_swapped_in_whole_not_changed_in_place():
    directory = ClientDirectory()
    directory.observe("10.0.0.1")
    directory.update(ptr={"10.0.0.1": "old.lan"})
    held = directory._names  # what a reader holding the old dict sees

    directory.update(ptr={"10.0.0.1": "new.lan"})

    assert held == {"10.0.0.1": "old.lan"}
    assert directory._names is not held
    assert directory.name_for("10.0.0.1") == "new.lan"


def test_past_the_bound_a_new_client_is_counted_not_queued():
    stats = EngineStats()
    directory = ClientDirectory(max_clients=3, stats=stats)

    for i in range(10):
        directory.observe(f"10.0.0.{i}")
    directory.observe("10.0.0.0")  # known: no overflow

    assert len(directory.take_new(100)) == 3
    assert directory.counts()[0] == 3
    assert stats.counters["client_names_overflow"] == 7


def test_forgotten_clients_make_room_and_are_queued_again():
    directory = ClientDirectory(max_clients=2)
    directory.observe("10.0.0.1")
    directory.observe("10.0.0.2")
    directory.take_new(10)

    directory.forget(["10.0.0.1"])
    directory.observe("10.0.0.3")
    directory.observe("10.0.0.1")

    assert directory.take_new(10) == ["10.0.0.3"]
    assert sorted(directory.known()) == ["10.0.0.2", "10.0.0.3"]


def test_names_by_source_are_counted():
    directory = ClientDirectory()
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):
        directory.observe(ip)
    directory.set_configured({"10.0.0.1": "a"}, [], {})

    directory.update(hosts={"10.0.0.2": "b"}, ptr={"10.0.0.3": "c.lan"})

    assert directory.counts() == (4, {"configured": 1, "hosts": 1, "ptr": 1})


def test_readers_are_never_locked_out_by_a_rebuild():
    directory = ClientDirectory()
    directory.observe("10.0.0.1")
    directory.update(ptr={"10.0.0.1": "a.lan"})
    seen = []
    with directory._lock:  # a rebuild in progress in another thread
        reader = threading.Thread(target=lambda: seen.append((directory.name_for("10.0.0.1"), directory.observe("x"))))
        reader.start()
        reader.join(2)

    assert seen == [("a.lan", None)]


# --- host names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("annas-phone.lan.", "annas-phone.lan"),
        ("Living_Room-TV", "Living_Room-TV"),
        ("-bad.lan", ""),
        ("a..b", ""),
        ("<script>", ""),
        ("name with space", ""),
        ("x" * 64 + ".lan", ""),
        (".".join(["a" * 63] * 4), ""),  # 255 characters
        ("", ""),
        ("caf\u00e9.lan", ""),
    ],
)
def test_only_valid_host_names_are_kept(raw, kept):
    assert clean_hostname(raw) == kept


# --- the hosts file ----------------------------------------------------------------------

HOSTS = """\
# DHCP leases, exported by the router
192.168.1.10   annas-phone  annas-phone.lan   # the first name is the one shown
192.168.1.11\tlaptop.lan
192.168.1.10   duplicate     # the first line naming an address wins
2001:db8::5    tv.lan
fe80::1%eth0   router
not-an-ip      junk
192.168.1.12
192.168.1.13   <bad> still-good
192.168.1.14   <only-bad>
   # indented comment

"""


def test_the_hosts_parser_reads_names_and_skips_junk():
    assert parse_hosts(HOSTS) == {
        "192.168.1.10": "annas-phone",
        "192.168.1.11": "laptop.lan",
        "2001:db8::5": "tv.lan",
        "fe80::1": "router",
        "192.168.1.13": "still-good",
    }


def test_the_hosts_parser_stops_at_its_bound():
    text = "\n".join(f"10.0.{i // 256}.{i % 256} host{i}" for i in range(1000))

    assert len(parse_hosts(text, max_entries=100)) == 100


# --- the neighbour tables ---------------------------------------------------------------

PROC_NET_ARP = """\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.1      0x1         0x2         AA:BB:CC:DD:EE:01     *        eth0
192.168.1.37     0x1         0x2         aa:bb:cc:dd:ee:37     *        eth0
192.168.1.50     0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.1.51     0x1         0x6         aa:bb:cc:dd:ee:51     *        wlan0
garbage line
10.0.0.1         0x1         zz          aa:bb:cc:dd:ee:02     *        eth1
"""


def test_the_arp_parser_reads_complete_entries():
    assert parse_proc_arp(PROC_NET_ARP) == {
        "192.168.1.1": "aa:bb:cc:dd:ee:01",
        "192.168.1.37": "aa:bb:cc:dd:ee:37",
        "192.168.1.51": "aa:bb:cc:dd:ee:51",
    }


IP_NEIGH = """\
fe80::1 dev eth0 lladdr aa:bb:cc:dd:ee:ff router REACHABLE
2001:db8::7 dev eth0 lladdr 11:22:33:44:55:66 STALE
2001:db8::8 dev eth0  FAILED
2001:db8::9 dev eth0 lladdr
2001:db8::a dev eth0 lladdr not-a-mac DELAY
"""


def test_the_ip_neigh_parser_reads_entries_with_a_mac():
    assert parse_ip_neigh(IP_NEIGH) == {"fe80::1": "aa:bb:cc:dd:ee:ff", "2001:db8::7": "11:22:33:44:55:66"}
