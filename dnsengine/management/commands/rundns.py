"""python manage.py rundns: serve DNS until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from dnsengine.config import EngineConfig
from dnsengine.engine import Engine


class Command(BaseCommand):
    help = "Run the Glory-Hole DNS engine (UDP and TCP) until SIGTERM or SIGINT."
    # The engine does not serve URLs or templates; their checks would only make a
    # web-side mistake stop DNS for the whole network.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", help="address to listen on (default GLORYHOLE_DNS_HOST, 127.0.0.1)")
        parser.add_argument("--port", type=int, help="port for UDP and TCP (default GLORYHOLE_DNS_PORT, 5300)")

    def handle(self, *args, **options) -> None:
        try:
            config = EngineConfig.from_settings(options["host"], options["port"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())

        engine = Engine(config)
        try:
            engine.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {config.host}:{config.port}: {exc}") from None
        self.stdout.write(
            f"listening on {config.host}:{engine.port} (udp, tcp); upstreams "
            + ", ".join(u.label for u in config.upstreams),
        )
        self.stdout.flush()
        stop.wait()
        # Listeners first, so nothing new arrives while the rest shuts down.
        engine.stop()
        connections.close_all()
        self.stdout.write(f"stopped after {engine.stats.total()} queries")
