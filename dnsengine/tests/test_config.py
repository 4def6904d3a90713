"""Engine settings: what each value means, and errors that name the setting at fault."""

from __future__ import annotations

import socket
from ipaddress import ip_network

import pytest
from django.core.exceptions import ImproperlyConfigured

from dnsengine.core.options import BlockingMode, ConfigError, Upstream, parse_blocking_mode, parse_upstreams

# -- parse_upstreams -------------------------------------------------------------------
from dnsengine.runtime.config import EngineConfig


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.1.1.1", (Upstream("1.1.1.1", 53),)),
        ("1.1.1.1:5353", (Upstream("1.1.1.1", 5353),)),
        (" 1.1.1.1:5353 , ,9.9.9.9, ", (Upstream("1.1.1.1", 5353), Upstream("9.9.9.9", 53))),
        ("[::1]:5300", (Upstream("::1", 5300),)),
        ("[2001:DB8::53]", (Upstream("2001:db8::53", 53),)),
        ("2001:db8:0:0::53", (Upstream("2001:db8::53", 53),)),
        ("::1", (Upstream("::1", 53),)),
        ("127.0.0.1:1,[::1]:65535", (Upstream("127.0.0.1", 1), Upstream("::1", 65535))),
    ],
)
def test_it_reads_upstreams_with_and_without_ports(raw, expected):
    assert parse_upstreams(raw) == expected


def test_an_upstream_knows_its_address_family_and_label():
    v4, v6 = parse_upstreams("192.0.2.1:5353,[2001:db8::1]:53")

    assert (v4.family, v4.label) == (socket.AF_INET, "192.0.2.1:5353")
    assert (v6.family, v6.label) == (socket.AF_INET6, "[2001:db8::1]:53")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "GLORYHOLE_UPSTREAMS is empty: name at least one upstream resolver (host[:port])"),
        (" , ,", "GLORYHOLE_UPSTREAMS is empty: name at least one upstream resolver (host[:port])"),
        ("dns.google", "GLORYHOLE_UPSTREAMS: 'dns.google' in 'dns.google' is not an IP address"),
        ("1.1.1.1,dns.quad9.net:53", "GLORYHOLE_UPSTREAMS: 'dns.quad9.net' in 'dns.quad9.net:53' is not an IP address"),
        ("1.1.1.1:dns", "GLORYHOLE_UPSTREAMS: port 'dns' in '1.1.1.1:dns' is not a number"),
        ("1.1.1.1:", "GLORYHOLE_UPSTREAMS: port '' in '1.1.1.1:' is not a number"),
        ("1.1.1.1:0", "GLORYHOLE_UPSTREAMS: port 0 in '1.1.1.1:0' is out of range"),
        ("1.1.1.1:65536", "GLORYHOLE_UPSTREAMS: port 65536 in '1.1.1.1:65536' is out of range"),
        ("[::1:53", "GLORYHOLE_UPSTREAMS: '[::1:53' has an unclosed '['"),
        ("[::1]53", "GLORYHOLE_UPSTREAMS: '[::1]53' is not [IPv6]:port"),
        ("[::1]:abc", "GLORYHOLE_UPSTREAMS: port 'abc' in '[::1]:abc' is not a number"),
        ("[fe80::zz]:53", "GLORYHOLE_UPSTREAMS: 'fe80::zz' in '[fe80::zz]:53' is not an IP address"),
    ],
)
def test_it_refuses_a_bad_upstream_and_names_the_setting(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_upstreams(raw)

    assert str(info.value) == message


def test_it_names_the_setting_it_was_given():
    with pytest.raises(ConfigError, match=r"^GLORYHOLE_FALLBACK_UPSTREAMS: "):
        parse_upstreams("resolver.lan", setting="GLORYHOLE_FALLBACK_UPSTREAMS")


# -- parse_blocking_mode ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("null", BlockingMode("null")),
        (" NXDOMAIN ", BlockingMode("nxdomain")),
        ("Refused", BlockingMode("refused")),
        ("ip:10.1.2.3", BlockingMode("ip", "10.1.2.3", None)),
        ("ip:fd00::1", BlockingMode("ip", None, "fd00::1")),
        ("ip:10.1.2.3,fd00::1", BlockingMode("ip", "10.1.2.3", "fd00::1")),
        ("IP: FD00:0::1 , 10.1.2.3", BlockingMode("ip", "10.1.2.3", "fd00::1")),
    ],
)
def test_it_reads_each_blocking_mode(raw, expected):
    assert parse_blocking_mode(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("block", "GLORYHOLE_BLOCKING_MODE='block': use null, nxdomain, refused or ip:ADDR[,ADDR6]"),
        ("", "GLORYHOLE_BLOCKING_MODE='': use null, nxdomain, refused or ip:ADDR[,ADDR6]"),
        ("ip", "GLORYHOLE_BLOCKING_MODE='ip': use null, nxdomain, refused or ip:ADDR[,ADDR6]"),
        ("ip:", "GLORYHOLE_BLOCKING_MODE: '' is not an IP address"),
        ("ip:10.1.2.3,", "GLORYHOLE_BLOCKING_MODE: '' is not an IP address"),
        ("ip:sinkhole.lan", "GLORYHOLE_BLOCKING_MODE: 'sinkhole.lan' is not an IP address"),
        ("ip:10.1.2.3,10.1.2.4", "GLORYHOLE_BLOCKING_MODE: give at most one IPv4 address"),
        ("ip:fd00::1,fd00::2", "GLORYHOLE_BLOCKING_MODE: give at most one IPv6 address"),
    ],
)
def test_it_refuses_a_bad_blocking_mode_and_names_the_setting(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_blocking_mode(raw)

    assert str(info.value) == message


# -- EngineConfig.from_settings --------------------------------------------------------


@pytest.fixture
def engine_settings(settings):
    settings.GLORYHOLE_DNS_HOST = "127.0.0.1"
    settings.GLORYHOLE_DNS_PORT = 5300
    settings.GLORYHOLE_UPSTREAMS = "192.0.2.53:5353,[2001:db8::53]"
    settings.GLORYHOLE_UPSTREAM_TIMEOUT = 1.5
    settings.GLORYHOLE_MAX_INFLIGHT = 512
    settings.GLORYHOLE_BLOCKING_MODE = "ip:10.1.2.3"
    settings.GLORYHOLE_BLOCK_TTL = 10
    settings.GLORYHOLE_CACHE_SIZE = 1000
    settings.GLORYHOLE_CACHE_MAX_BYTES = 8 << 20
    settings.GLORYHOLE_CACHE_MIN_TTL = 5
    settings.GLORYHOLE_CACHE_MAX_TTL = 3600
    settings.GLORYHOLE_CACHE_NEGATIVE_MAX_TTL = 600
    settings.GLORYHOLE_TCP_MAX_CONNECTIONS = 64
    settings.GLORYHOLE_TCP_MAX_CONNECTIONS_PER_CLIENT = 8
    settings.GLORYHOLE_FORWARD_SINGLE_LABEL = True
    settings.GLORYHOLE_FORWARD_PRIVATE_REVERSE = False
    settings.GLORYHOLE_TCP_IDLE_TIMEOUT = 7.5
    settings.GLORYHOLE_RELOAD_INTERVAL = 2.0
    settings.GLORYHOLE_ENGINE_NAME = "edge-1"
    settings.GLORYHOLE_METRICS_PORT = 9153
    settings.GLORYHOLE_ALLOWED_CLIENTS = "192.168.1.0/24, 2001:db8::/32"
    settings.GLORYHOLE_DISALLOWED_CLIENTS = "192.168.1.66"
    settings.GLORYHOLE_REFUSED_CLIENTS_ACTION = "Drop"
    settings.GLORYHOLE_RATE_LIMIT = 500
    settings.GLORYHOLE_RATE_LIMIT_WINDOW = 30.0
    settings.GLORYHOLE_RATE_LIMIT_EXEMPT = "192.168.1.1"
    settings.GLORYHOLE_RATE_LIMIT_MAX_CLIENTS = 2000
    settings.GLORYHOLE_CNAME_INSPECTION = False
    settings.GLORYHOLE_SERVE_STALE_MAX_AGE = 3600
    settings.GLORYHOLE_PREFETCH_MIN_HITS = 5
    return settings


def test_it_builds_the_engine_config_from_settings(engine_settings):
    config = EngineConfig.from_settings()

    assert config == EngineConfig(
        host="127.0.0.1",
        port=5300,
        upstreams=(Upstream("192.0.2.53", 5353), Upstream("2001:db8::53", 53)),
        upstream_timeout=1.5,
        max_inflight=512,
        blocking=BlockingMode("ip", "10.1.2.3", None),
        block_ttl=10,
        cache_size=1000,
        cache_max_bytes=8 << 20,
        cache_min_ttl=5,
        cache_max_ttl=3600,
        cache_negative_max_ttl=600,
        tcp_max_connections=64,
        tcp_max_per_client=8,
        tcp_idle_timeout=7.5,
        forward_single_label=True,
        forward_private_reverse=False,
        reload_interval=2.0,
        engine_name="edge-1",
        metrics_port=9153,
        allowed_clients=(ip_network("192.168.1.0/24"), ip_network("2001:db8::/32")),
        disallowed_clients=(ip_network("192.168.1.66/32"),),
        refused_clients_action="drop",
        rate_limit=500,
        rate_limit_window=30.0,
        rate_limit_exempt=(ip_network("192.168.1.1/32"),),
        rate_limit_max_clients=2000,
        cname_inspection=False,
        serve_stale_max_age=3600,
        prefetch_min_hits=5,
        dot_port=853,  # the defaults: neither listener runs without a certificate
        doh_port=443,
    )


def test_command_line_host_and_port_win_over_settings(engine_settings):
    config = EngineConfig.from_settings(host="::", port=0)

    assert (config.host, config.port) == ("::", 0)


def test_the_engine_is_named_after_the_machine_and_port_by_default(engine_settings):
    engine_settings.GLORYHOLE_ENGINE_NAME = ""

    assert EngineConfig.from_settings(port=5353).engine_name == f"{socket.gethostname()}:5353"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"GLORYHOLE_DNS_HOST": "localhost"},
            "GLORYHOLE_DNS_HOST / --host='localhost' must be an IP address (0.0.0.0 or :: for all)",
        ),
        ({"GLORYHOLE_DNS_PORT": 65536}, "GLORYHOLE_DNS_PORT / --port=65536 is not a port number"),
        ({"GLORYHOLE_DNS_PORT": -1}, "GLORYHOLE_DNS_PORT / --port=-1 is not a port number"),
        (
            {"GLORYHOLE_CACHE_MIN_TTL": 600, "GLORYHOLE_CACHE_MAX_TTL": 300},
            "GLORYHOLE_CACHE_MIN_TTL=600 is above GLORYHOLE_CACHE_MAX_TTL=300",
        ),
        (
            {"GLORYHOLE_UPSTREAMS": "dns.google"},
            "GLORYHOLE_UPSTREAMS: 'dns.google' in 'dns.google' is not an IP address",
        ),
        (
            {"GLORYHOLE_BLOCKING_MODE": "sinkhole"},
            "GLORYHOLE_BLOCKING_MODE='sinkhole': use null, nxdomain, refused or ip:ADDR[,ADDR6]",
        ),
        (
            {"GLORYHOLE_ALLOWED_CLIENTS": "192.168.1.0/24,laptop"},
            "GLORYHOLE_ALLOWED_CLIENTS: 'laptop' is not an IP address or network (e.g. 192.168.1.0/24)",
        ),
        (
            {"GLORYHOLE_DISALLOWED_CLIENTS": "10.0.0.0/33"},
            "GLORYHOLE_DISALLOWED_CLIENTS: '10.0.0.0/33' is not an IP address or network (e.g. 192.168.1.0/24)",
        ),
        (
            {"GLORYHOLE_RATE_LIMIT_EXEMPT": "router"},
            "GLORYHOLE_RATE_LIMIT_EXEMPT: 'router' is not an IP address or network (e.g. 192.168.1.0/24)",
        ),
        (
            {"GLORYHOLE_REFUSED_CLIENTS_ACTION": "ignore"},
            "GLORYHOLE_REFUSED_CLIENTS_ACTION='ignore': use refuse (answer REFUSED) or drop (no answer)",
        ),
    ],
)
def test_it_refuses_bad_settings_naming_the_setting(engine_settings, overrides, message):
    for name, value in overrides.items():
        setattr(engine_settings, name, value)

    with pytest.raises(ImproperlyConfigured) as info:
        EngineConfig.from_settings()

    assert str(info.value) == message


def test_it_names_the_command_line_option_for_a_bad_host(engine_settings):
    with pytest.raises(ImproperlyConfigured, match=r"--host='0\.0\.0\.0:53' must be an IP address"):
        EngineConfig.from_settings(host="0.0.0.0:53")
