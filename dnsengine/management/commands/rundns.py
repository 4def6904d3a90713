"""python manage.py rundns: serve DNS until SIGTERM/SIGINT; SIGHUP re-reads the query-log settings and TLS files."""

from __future__ import annotations

import signal
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from dnsengine.core import compiled
from dnsengine.runtime.config import EngineConfig
from dnsengine.runtime.runner import DATABASE_WAIT_REPORT_SECONDS, EngineRunner, EngineStartError


class Command(BaseCommand):
    help = "Run the Glory-Hole DNS engine (UDP and TCP) until SIGTERM or SIGINT."
    # The engine does not serve URLs or templates; their checks would only make a
    # web-side mistake stop DNS for the whole network.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", help="address to listen on (default GLORYHOLE_DNS_HOST, 127.0.0.1)")
        parser.add_argument("--port", type=int, help="port for UDP and TCP (default GLORYHOLE_DNS_PORT, 5300)")
        parser.add_argument(
            "--wait-report-interval",
            type=float,
            default=DATABASE_WAIT_REPORT_SECONDS,
            metavar="SECONDS",
            help="while the database does not answer at start, say so this often (default %(default)s)",
        )

    def handle(self, *args, **options) -> None:
        if not options["wait_report_interval"] > 0:
            raise CommandError("--wait-report-interval must be above 0")
        stop, hup = threading.Event(), threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: hup.set())
        try:
            runner = EngineRunner(EngineConfig.from_settings(options["host"], options["port"]))
            started = runner.start(stop, wait_report_interval=options["wait_report_interval"])
        except (ImproperlyConfigured, EngineStartError) as exc:
            raise CommandError(str(exc)) from None
        if not started:
            self.stdout.write("stopped before serving: the database never answered")
            return
        config = runner.config
        metrics = f"; metrics {runner.metrics.url}" if runner.metrics else ""
        engine = runner.engine
        encrypted = "".join(f", {name} on {server.port}" for name, server in (("dot", engine.dot), ("doh", engine.doh))
                            if server is not None)  # fmt: skip
        self.stdout.write(
            f"listening on {config.host}:{runner.engine.port} (udp, tcp{encrypted}) as {runner.name}; upstreams "
            + ", ".join(u.label for u in config.upstreams)
            + metrics
            + f"; {compiled.summary()}"
        )
        self.stdout.flush()
        while not stop.wait(0.5):
            if hup.is_set():
                hup.clear()
                runner.engine.tls_reload()
                try:
                    runner.reload_logging()
                except ImproperlyConfigured as exc:
                    self.stderr.write(f"SIGHUP ignored, keeping the current query log: {exc}")
        report = runner.stop()
        self.stdout.write(
            f"stopped after {runner.engine.stats.total()} queries; query log: {report.written} written, "
            f"{report.dropped} dropped, {report.unwritten} unwritten, {report.not_logged} not logged (privacy)"
        )
