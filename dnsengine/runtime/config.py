"""The engine's settings, validated once at start-up.

settings.py reads raw values from the environment; this module checks what
they mean (an upstream address, a blocking mode) and names the setting in the
error, so a bad value stops `rundns` with a message instead of a traceback
halfway through serving.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from dnsengine.core.access import Network, parse_networks, parse_refused_action
from dnsengine.core.options import BlockingMode, ConfigError, Upstream, parse_blocking_mode, parse_upstreams
from dnsengine.core.tls import TlsCertificate
from gloryhole_site.dns_env import ttl_clamps_check


@dataclass(frozen=True, slots=True)
class EngineConfig:
    host: str
    port: int
    upstreams: tuple[Upstream, ...]
    upstream_timeout: float
    max_inflight: int
    blocking: BlockingMode
    block_ttl: int
    cache_size: int
    cache_max_bytes: int
    cache_min_ttl: int
    cache_max_ttl: int
    cache_negative_max_ttl: int
    tcp_max_connections: int
    tcp_max_per_client: int
    tcp_idle_timeout: float
    forward_single_label: bool
    forward_private_reverse: bool
    reload_interval: float
    engine_name: str
    metrics_port: int
    # Access control and rate limiting (dnsengine.core.access, dnsengine.core.ratelimit); the
    # defaults here are "off", settings.py's are the documented ones.
    allowed_clients: tuple[Network, ...] = ()
    disallowed_clients: tuple[Network, ...] = ()
    refused_clients_action: str = "refuse"
    rate_limit: int = 0  # queries per rate_limit_window seconds per client; 0: no limit
    rate_limit_window: float = 60.0
    rate_limit_exempt: tuple[Network, ...] = ()
    rate_limit_max_clients: int = 10000
    client_group_cache_size: int = 65536
    group_upstream_sets: int = 8
    forwarding_upstream_sets: int = 16
    # Forwarded answers (docs/forwarding-answers.md); the defaults here are "off" but for
    # CNAME inspection, settings.py's are the documented ones.
    cname_inspection: bool = True
    serve_stale_max_age: int = 0
    prefetch_min_hits: int = 0
    # A hosts-format file of local records (dnsengine.runtime.local_hosts); "" for none.
    local_hosts_file: str = ""
    # Encrypted DNS for the clients (dnsengine.core.tls, dnsengine.core.doh): off without a certificate.
    tls_cert: str = ""
    tls_key: str = ""
    dot_port: int | None = None  # None: off; 0: any free port (the tests)
    doh_port: int | None = None
    tls_handshake_timeout: float = 5.0
    tls_check_interval: float = 5.0  # seconds between looks at the certificate files
    doh_max_request: int = 4096
    # Proxies whose X-Forwarded-For names a DoH client (GLORYHOLE_TRUSTED_PROXIES).
    trusted_proxies: tuple[Network, ...] = ()

    @property
    def dot_enabled(self) -> bool:
        return bool(self.tls_cert) and self.dot_port is not None

    @property
    def doh_enabled(self) -> bool:
        return bool(self.tls_cert) and self.doh_port is not None

    @classmethod
    def from_settings(cls, host: str | None = None, port: int | None = None) -> EngineConfig:
        host = host if host is not None else settings.GLORYHOLE_DNS_HOST
        port = port if port is not None else settings.GLORYHOLE_DNS_PORT
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ImproperlyConfigured(
                f"GLORYHOLE_DNS_HOST / --host={host!r} must be an IP address (0.0.0.0 or :: for all)"
            ) from None
        if not 0 <= port <= 65535:
            raise ImproperlyConfigured(f"GLORYHOLE_DNS_PORT / --port={port} is not a port number")
        min_ttl, max_ttl = settings.GLORYHOLE_CACHE_MIN_TTL, settings.GLORYHOLE_CACHE_MAX_TTL
        ttl_clamps_check(min_ttl, max_ttl)
        try:
            upstreams = parse_upstreams(settings.GLORYHOLE_UPSTREAMS)
            blocking = parse_blocking_mode(settings.GLORYHOLE_BLOCKING_MODE)
            allowed = parse_networks(settings.GLORYHOLE_ALLOWED_CLIENTS, "GLORYHOLE_ALLOWED_CLIENTS")
            disallowed = parse_networks(settings.GLORYHOLE_DISALLOWED_CLIENTS, "GLORYHOLE_DISALLOWED_CLIENTS")
            refused_action = parse_refused_action(settings.GLORYHOLE_REFUSED_CLIENTS_ACTION)
            exempt = parse_networks(settings.GLORYHOLE_RATE_LIMIT_EXEMPT, "GLORYHOLE_RATE_LIMIT_EXEMPT")
        except ConfigError as error:
            raise ImproperlyConfigured(str(error)) from None
        tls_cert, tls_key = settings.GLORYHOLE_TLS_CERT, settings.GLORYHOLE_TLS_KEY
        if bool(tls_cert) != bool(tls_key):
            raise ImproperlyConfigured("GLORYHOLE_TLS_CERT and GLORYHOLE_TLS_KEY go together: set both or neither")
        if tls_cert:
            try:
                TlsCertificate(tls_cert, tls_key)
            except (OSError, ValueError, ssl.SSLError) as exc:
                raise ImproperlyConfigured(
                    f"GLORYHOLE_TLS_CERT={tls_cert!r} / GLORYHOLE_TLS_KEY={tls_key!r} do not load: {exc}"
                ) from None
        return cls(
            host=host,
            port=port,
            upstreams=upstreams,
            upstream_timeout=settings.GLORYHOLE_UPSTREAM_TIMEOUT,
            max_inflight=settings.GLORYHOLE_MAX_INFLIGHT,
            blocking=blocking,
            block_ttl=settings.GLORYHOLE_BLOCK_TTL,
            cache_size=settings.GLORYHOLE_CACHE_SIZE,
            cache_max_bytes=settings.GLORYHOLE_CACHE_MAX_BYTES,
            cache_min_ttl=min_ttl,
            cache_max_ttl=max_ttl,
            cache_negative_max_ttl=settings.GLORYHOLE_CACHE_NEGATIVE_MAX_TTL,
            tcp_max_connections=settings.GLORYHOLE_TCP_MAX_CONNECTIONS,
            tcp_max_per_client=settings.GLORYHOLE_TCP_MAX_CONNECTIONS_PER_CLIENT,
            tcp_idle_timeout=settings.GLORYHOLE_TCP_IDLE_TIMEOUT,
            forward_single_label=settings.GLORYHOLE_FORWARD_SINGLE_LABEL,
            forward_private_reverse=settings.GLORYHOLE_FORWARD_PRIVATE_REVERSE,
            reload_interval=settings.GLORYHOLE_RELOAD_INTERVAL,
            engine_name=settings.GLORYHOLE_ENGINE_NAME or f"{socket.gethostname()}:{port}",
            metrics_port=settings.GLORYHOLE_METRICS_PORT,
            allowed_clients=allowed,
            disallowed_clients=disallowed,
            refused_clients_action=refused_action,
            rate_limit=settings.GLORYHOLE_RATE_LIMIT,
            rate_limit_window=settings.GLORYHOLE_RATE_LIMIT_WINDOW,
            rate_limit_exempt=exempt,
            rate_limit_max_clients=settings.GLORYHOLE_RATE_LIMIT_MAX_CLIENTS,
            client_group_cache_size=settings.GLORYHOLE_CLIENT_GROUP_CACHE_SIZE,
            group_upstream_sets=settings.GLORYHOLE_GROUP_UPSTREAM_SETS,
            forwarding_upstream_sets=settings.GLORYHOLE_FORWARDING_UPSTREAM_SETS,
            cname_inspection=settings.GLORYHOLE_CNAME_INSPECTION,
            serve_stale_max_age=settings.GLORYHOLE_SERVE_STALE_MAX_AGE,
            prefetch_min_hits=settings.GLORYHOLE_PREFETCH_MIN_HITS,
            local_hosts_file=settings.GLORYHOLE_LOCAL_HOSTS_FILE,
            tls_cert=tls_cert,
            tls_key=tls_key,
            dot_port=settings.GLORYHOLE_DOT_PORT or None,
            doh_port=settings.GLORYHOLE_DOH_PORT or None,
            tls_handshake_timeout=settings.GLORYHOLE_TLS_HANDSHAKE_TIMEOUT,
            doh_max_request=settings.GLORYHOLE_DOH_MAX_REQUEST,
            trusted_proxies=tuple(settings.GLORYHOLE_TRUSTED_PROXIES),
        )
