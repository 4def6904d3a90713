"""The engine assembled: listeners, resolver, cache, forwarder, client names, config watcher, blocklist updater."""

from __future__ import annotations

import dataclasses
import logging

from django.conf import settings

from dnsengine.core.access import AccessControl
from dnsengine.core.cache import ReplyCache, TtlPolicy
from dnsengine.core.clients import ClientDirectory
from dnsengine.core.doh import DohListener
from dnsengine.core.ioloop import IoLoop
from dnsengine.core.options import Upstream, parse_blocking_mode, parse_upstreams
from dnsengine.core.ratelimit import RateLimiter
from dnsengine.core.resolver import QueryLogSink, Resolver
from dnsengine.core.server import DNSServer
from dnsengine.core.stats import EngineStats
from dnsengine.core.tls import TlsCertificate, TlsListener, TlsServer
from dnsengine.core.upstream import UpstreamForwarder
from dnsengine.runtime.client_names import ClientNames, ClientNamesConfig
from dnsengine.runtime.config import EngineConfig
from dnsengine.runtime.local_hosts import LocalHostsFile
from dnsengine.runtime.updater import BlocklistUpdater
from dnsengine.runtime.watcher import ConfigWatcher
from gloryhole_site import dns_env

logger = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        query_logger: QueryLogSink | None = None,
        *,
        blocklist_updater: BlocklistUpdater | None = None,
    ) -> None:
        self.config = config
        # What it started with (settings.py, rundns's options): the settings page's values apply over it.
        self.base_config = config
        self.stats = EngineStats()
        self.cache = ReplyCache(config.cache_size, max_bytes=config.cache_max_bytes,
                                stale_max_age=config.serve_stale_max_age)  # fmt: skip
        # Client names and MACs: read by the DNS path, filled by the client-names thread.
        names_config = ClientNamesConfig.from_settings()
        self.clients = ClientDirectory(names_config.max_clients, self.stats)
        self.client_names = ClientNames(self.clients, names_config, self.stats, ptr_route=self._client_ptr_upstream)
        # One thread reads the clients' UDP queries and the upstreams' replies (see dnsengine.core.ioloop).
        self.loop = IoLoop("dns-io")
        self.forwarder = UpstreamForwarder(config.upstreams, config.upstream_timeout, config.max_inflight, self.stats,
                                           self.loop)  # fmt: skip
        self.access = AccessControl(config.allowed_clients, config.disallowed_clients, stats=self.stats)
        self.rate_limiter: RateLimiter | None = None  # GLORYHOLE_RATE_LIMIT=0: no limit
        if config.rate_limit > 0:
            self.rate_limiter = RateLimiter(config.rate_limit, config.rate_limit_window, config.rate_limit_exempt,
                                            config.rate_limit_max_clients, stats=self.stats)  # fmt: skip
        self.resolver = Resolver(
            forwarder=self.forwarder,
            blocking=config.blocking,
            block_ttl=config.block_ttl,
            cache=self.cache,
            ttl_policy=TtlPolicy(config.cache_min_ttl, config.cache_max_ttl, config.cache_negative_max_ttl),
            stats=self.stats,
            query_logger=query_logger,
            forward_single_label=config.forward_single_label,
            forward_private_reverse=config.forward_private_reverse,
            clients=self.clients,
            access=self.access,
            refused_action=config.refused_clients_action,
            rate_limiter=self.rate_limiter,
            cname_inspection=config.cname_inspection,
            prefetch_min_hits=config.prefetch_min_hits,
        )
        if self.rate_limiter is not None:
            limiter, clock = self.rate_limiter, self.resolver.clock
            self.stats.gauges["rate_limit_clients"] = lambda: limiter.size
            self.stats.gauges["rate_limited_clients"] = lambda: len(limiter.limited_clients(clock()))
        self.server = DNSServer(
            self.resolver,
            self.stats,
            config.host,
            config.port,
            loop=self.loop,
            tcp_max_connections=config.tcp_max_connections,
            tcp_idle_timeout=config.tcp_idle_timeout,
            tcp_max_per_client=config.tcp_max_per_client,
        )
        # DoT and DoH for the clients, each on its own thread with the TCP bounds
        # (docs/encrypted-dns.md); none without a certificate.
        self.dot: TlsServer | None = None
        self.doh: TlsServer | None = None
        if config.dot_enabled:
            self.dot = self._encrypted_server(TlsListener, config.dot_port, ("dot",), "dns-dot")
        if config.doh_enabled:
            self.doh = self._encrypted_server(DohListener, config.doh_port, ("h2", "http/1.1"), "dns-doh",
                                              max_request=config.doh_max_request,
                                              trusted_proxies=config.trusted_proxies)  # fmt: skip
        # Forwarders of client groups with their own upstreams, one per distinct list, made
        # on the reload that first needs one and kept until the engine stops (at most
        # config.group_upstream_sets of them).
        self.group_forwarders: dict[tuple[Upstream, ...], UpstreamForwarder] = {}
        # Likewise for conditional-forwarding rules (config.forwarding_upstream_sets of them);
        # a rule on the same list as a group shares the group's forwarder.
        self.rule_forwarders: dict[tuple[Upstream, ...], UpstreamForwarder] = {}
        self.watcher = ConfigWatcher(self.resolver, config.reload_interval, directory=self.clients,
                                     forwarder_for=self.forwarder_for, rule_forwarder_for=self.rule_forwarder_for,
                                     group_cache_size=config.client_group_cache_size, stats=self.stats,
                                     local_hosts=LocalHostsFile(config.local_hosts_file))  # fmt: skip
        # The settings page's values, applied before each reload's snapshot is built.
        self.watcher.settings_listeners.append(self.settings_apply)
        self._started = False
        # Scheduled list updates, unless GLORYHOLE_BLOCKLIST_UPDATE_HOURS=0 leaves them to cron.
        if blocklist_updater is None and settings.GLORYHOLE_BLOCKLIST_UPDATE_HOURS > 0:
            blocklist_updater = BlocklistUpdater()
        self.updater = blocklist_updater

    def _encrypted_server(self, listener_class: type[TlsListener], port: int, alpn: tuple[str, ...],
                          thread_name: str, **extra) -> TlsServer:  # fmt: skip
        config = self.config
        certificate = TlsCertificate(config.tls_cert, config.tls_key, alpn=alpn,
                                     check_interval=config.tls_check_interval)  # fmt: skip
        return TlsServer(listener_class, self.resolver, self.stats, config.host, port, certificate,
                         thread_name=thread_name, max_connections=config.tcp_max_connections,
                         idle_timeout=config.tcp_idle_timeout, max_per_client=config.tcp_max_per_client,
                         handshake_timeout=config.tls_handshake_timeout, **extra)  # fmt: skip

    @property
    def encrypted_servers(self) -> list[TlsServer]:
        return [s for s in (self.dot, self.doh) if s is not None]

    def tls_reload(self) -> None:
        """SIGHUP: re-read the certificate and key; connections made afterwards use them."""
        for server in self.encrypted_servers:
            server.certificate.request_reload()

    def forwarder_for(self, upstreams: tuple[Upstream, ...]) -> UpstreamForwarder | None:
        """The forwarder for a group's own upstreams; None (the default upstreams) past the limit."""
        if upstreams == self.config.upstreams:
            return None
        forwarder = self.group_forwarders.get(upstreams)
        if forwarder is None:
            if len(self.group_forwarders) >= self.config.group_upstream_sets:
                self.stats.count("group_upstreams_over_limit")
                logger.warning("more than %d distinct group upstream lists (GLORYHOLE_GROUP_UPSTREAM_SETS): %s "
                               "uses the default upstreams", self.config.group_upstream_sets,
                               ",".join(u.label for u in upstreams))  # fmt: skip
                return None
            forwarder = self.rule_forwarders.get(upstreams) or self._forwarder_new(upstreams)
            self.group_forwarders[upstreams] = forwarder
        return forwarder

    def rule_forwarder_for(self, upstreams: tuple[Upstream, ...]) -> UpstreamForwarder | None:
        """The forwarder for a forwarding rule's upstreams; None (the default upstreams) past the limit."""
        if upstreams == self.config.upstreams:
            return None
        forwarder = self.rule_forwarders.get(upstreams) or self.group_forwarders.get(upstreams)
        if forwarder is None:
            if len(self.rule_forwarders) >= self.config.forwarding_upstream_sets:
                self.stats.count("forwarding_upstreams_over_limit")
                logger.warning("more than %d distinct forwarding-rule upstream lists "
                               "(GLORYHOLE_FORWARDING_UPSTREAM_SETS): %s uses the default upstreams",
                               self.config.forwarding_upstream_sets, ",".join(u.label for u in upstreams))  # fmt: skip
                return None
            forwarder = self._forwarder_new(upstreams)
            self.rule_forwarders[upstreams] = forwarder
        return forwarder

    def _forwarder_new(self, upstreams: tuple[Upstream, ...]) -> UpstreamForwarder:
        forwarder = UpstreamForwarder(upstreams, self.config.upstream_timeout, self.config.max_inflight, self.stats,
                                      self.loop)  # fmt: skip
        forwarder.start()
        return forwarder

    def settings_apply(self, saved: dict[str, object]) -> None:
        """Serve with the values saved on the settings page (dnsengine.engine_settings) over the start-up ones.

        ``saved``: name -> parsed value, only for the settings saved and not fixed by the
        environment; one left out (cleared on the page) goes back to its start-up value.
        Runs on the config watcher's thread before it builds the next snapshot, whose
        apply_snapshot drops the cached and rendered replies. Each change is one attribute
        assignment the DNS path reads per query, so no query is dropped: new upstreams get a
        new default forwarder, and the old one is stopped once its in-flight queries are answered.
        """
        base = self.base_config
        upstreams = base.upstreams
        if dns_env.UPSTREAMS.name in saved:
            upstreams = parse_upstreams(saved[dns_env.UPSTREAMS.name])
        if upstreams != self.config.upstreams:
            self._default_upstreams_replace(upstreams)
        blocking = base.blocking
        if dns_env.BLOCKING_MODE.name in saved:
            blocking = parse_blocking_mode(saved[dns_env.BLOCKING_MODE.name])
        block_ttl = saved.get(dns_env.BLOCK_TTL.name, base.block_ttl)
        if (blocking, block_ttl) != (self.resolver.blocking, self.resolver.block_ttl):
            self.resolver.blocking_set(blocking, block_ttl)
            logger.info("blocking mode now %s, TTL %d", blocking.mode, block_ttl)
        cache_size = saved.get(dns_env.CACHE_SIZE.name, base.cache_size)
        if cache_size != self.cache.max_size:
            self.resolver.cache_resize(cache_size)
            logger.info("cache size now %d answers", cache_size)
        min_ttl = saved.get(dns_env.CACHE_MIN_TTL.name, base.cache_min_ttl)
        max_ttl = saved.get(dns_env.CACHE_MAX_TTL.name, base.cache_max_ttl)
        if min_ttl > max_ttl:  # one fixed by the environment, the other saved: the form cannot see both
            logger.warning("ignored the saved TTL clamps: minimum %d is above maximum %d", min_ttl, max_ttl)
            min_ttl, max_ttl = base.cache_min_ttl, base.cache_max_ttl
        ttl_policy = TtlPolicy(min_ttl, max_ttl, base.cache_negative_max_ttl)
        if ttl_policy != self.resolver.ttl_policy:
            self.resolver.ttl_policy = ttl_policy
            logger.info("cache TTLs now clamped to %d..%d s", min_ttl, max_ttl)
        self.watcher.interval = saved.get(dns_env.RELOAD_INTERVAL.name, base.reload_interval)
        self.config = dataclasses.replace(self.config, blocking=blocking, block_ttl=block_ttl, cache_size=cache_size,
                                          cache_min_ttl=min_ttl, cache_max_ttl=max_ttl,
                                          reload_interval=self.watcher.interval)  # fmt: skip

    def _default_upstreams_replace(self, upstreams: tuple[Upstream, ...]) -> None:
        old = self.forwarder
        if not self._started:  # start() starts it
            new = UpstreamForwarder(upstreams, self.config.upstream_timeout, self.config.max_inflight, self.stats,
                                    self.loop)  # fmt: skip
        else:
            new = self.group_forwarders.get(upstreams) or self.rule_forwarders.get(upstreams)
            new = new or self._forwarder_new(upstreams)
        self.forwarder = new
        self.resolver.forwarder = new  # from here on, new queries go to the new upstreams
        self.config = dataclasses.replace(self.config, upstreams=upstreams)
        logger.info("upstreams now %s", ", ".join(u.label for u in upstreams))
        in_use = {id(f) for f in (*self.group_forwarders.values(), *self.rule_forwarders.values())}
        if not self._started or id(old) in in_use:
            return  # never started, or a group's or rule's forwarder too: it stays
        drain = min(10.0, self.config.upstream_timeout * len(old.upstreams) + 0.5)
        if not old.drain(drain):
            logger.warning("replaced upstreams: %d queries still waiting on the old ones are answered SERVFAIL",
                           old.inflight)  # fmt: skip
        old.stop()
        self.loop.remove_ticker(old._tick)

    def _client_ptr_upstream(self, ip: str) -> Upstream | None:
        """The first upstream of the forwarding rule covering `ip`'s reverse zone: who can name that client."""
        forwarding = self.resolver.snapshot.forwarding
        route = forwarding.reverse_route(ip) if forwarding is not None else None
        return route.upstreams[0] if route is not None else None

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        # Load the lists before the first query is answered: an engine that starts
        # serving unblocked for a few seconds leaks exactly the queries people care about.
        self.watcher.load_now()
        self._started = True
        self.forwarder.start()
        self.server.start()
        for server in self.encrypted_servers:
            server.start()
        self.loop.start()
        self.watcher.start()
        self.client_names.start()
        if self.updater is not None:
            self.updater.start()

    def rate_limited_clients(self) -> list[str]:
        """The clients past their rate limit now, for the heartbeat (the clients page shows them)."""
        if self.rate_limiter is None:
            return []
        return self.rate_limiter.limited_clients(self.resolver.clock())

    def stop(self) -> None:
        """Stop answering; the query logger is the caller's to close afterwards.

        Reading stops first; queries already waiting on an upstream still get their
        reply (bounded by the failover time) before the sockets close, so a clean
        stop does not leave clients without an answer that the log says was sent.
        """
        self.server.stop_receiving()
        for server in self.encrypted_servers:
            server.stop_receiving()
        drain = min(10.0, self.config.upstream_timeout * len(self.config.upstreams) + 0.5)
        # A forwarder shared by a group and a rule is in both dicts: stopped once.
        forwarders = list({id(f): f for f in (self.forwarder, *self.group_forwarders.values(),
                                              *self.rule_forwarders.values())}.values())  # fmt: skip
        for forwarder in forwarders:
            if not forwarder.drain(drain):
                logger.warning("stopping with %d queries still waiting on upstreams", forwarder.inflight)
        self.server.close()
        for server in self.encrypted_servers:
            server.close()
        if self.updater is not None:
            self.updater.stop()
        self.watcher.stop()
        self.client_names.stop()
        for forwarder in forwarders:
            forwarder.stop()
        self.loop.stop()
