"""python manage.py rundns: serve DNS until SIGTERM/SIGINT; SIGHUP re-reads the query-log settings and TLS files."""

from __future__ import annotations

import argparse
import signal
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from dnsengine.core import compiled
from dnsengine.runtime import processes as procs
from dnsengine.runtime.config import EngineConfig
from dnsengine.runtime.runner import DATABASE_WAIT_REPORT_SECONDS, EngineRunner, EngineStartError
from dnsengine.runtime.signals import signal_events


def stop_line(queries: int, written: int, dropped: int, unwritten: int, not_logged: int) -> str:
    # devtools/load parses this line: keep its words.
    return (
        f"stopped after {queries} queries; query log: {written} written, "
        f"{dropped} dropped, {unwritten} unwritten, {not_logged} not logged (privacy)"
    )


class Command(BaseCommand):
    help = "Run the Glory-Hole DNS engine (UDP and TCP) until SIGTERM or SIGINT."
    # The engine does not serve URLs or templates; their checks would only make a
    # web-side mistake stop DNS for the whole network.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", help="address to listen on (default GLORYHOLE_DNS_HOST, 127.0.0.1)")
        parser.add_argument("--port", type=int, help="port for UDP and TCP (default GLORYHOLE_DNS_PORT, 5300)")
        parser.add_argument(
            "--processes",
            metavar="N|auto",
            help="engine processes sharing the port, auto: one per CPU (default GLORYHOLE_DNS_PROCESSES, 1)",
        )
        parser.add_argument(
            "--wait-report-interval",
            type=float,
            default=DATABASE_WAIT_REPORT_SECONDS,
            metavar="SECONDS",
            help="while the database does not answer at start, say so this often (default %(default)s)",
        )
        # Set by the supervisor of --processes N for the workers it starts (dnsengine.runtime.processes).
        parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--worker-of", type=int, default=1, help=argparse.SUPPRESS)
        parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)

    def handle(self, *args, **options) -> None:
        if not options["wait_report_interval"] > 0:
            raise CommandError("--wait-report-interval must be above 0")
        try:
            processes = procs.processes_parse(options["processes"] or settings.GLORYHOLE_DNS_PROCESSES)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        stop, hup = threading.Event(), threading.Event()
        signal_events({signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: hup})
        if options["worker"] is not None:
            procs.parent_watch(options["supervisor_pid"], stop)
            self.serve(options, stop, hup, worker=options["worker"], processes=options["worker_of"])
        elif processes > 1:
            self.supervise(options, stop, hup, processes)
        else:
            self.serve(options, stop, hup)

    def serve(self, options, stop, hup, *, worker: int | None = None, processes: int = 1) -> None:
        """One engine in this process: the default, or worker `worker` of a supervisor."""
        try:
            runner = EngineRunner(EngineConfig.from_settings(options["host"], options["port"]), worker=worker,
                                  processes=processes)  # fmt: skip
            started = runner.start(stop, wait_report_interval=options["wait_report_interval"])
        except (ImproperlyConfigured, EngineStartError) as exc:
            raise CommandError(str(exc)) from None
        if not started:
            if worker is None:  # the supervisor says it for its workers
                self.stdout.write("stopped before serving: the database never answered")
            return
        config, engine = runner.config, runner.engine
        if worker is not None:
            procs.report("ready", port=engine.port, name=runner.name,
                         dot_port=engine.dot.port if engine.dot else None,
                         doh_port=engine.doh.port if engine.doh else None,
                         metrics=runner.metrics.url if runner.metrics else "",
                         upstreams=[u.label for u in config.upstreams])  # fmt: skip
        else:
            metrics = f"; metrics {runner.metrics.url}" if runner.metrics else ""
            encrypted = "".join(f", {name} on {server.port}" for name, server in (("dot", engine.dot),
                                ("doh", engine.doh)) if server is not None)  # fmt: skip
            self.stdout.write(
                f"listening on {config.host}:{engine.port} (udp, tcp{encrypted}) as {runner.name}; upstreams "
                + ", ".join(u.label for u in config.upstreams)
                + metrics
                + f"; {compiled.summary()}"
            )
            self.stdout.flush()
        while not stop.wait(0.5):
            if hup.is_set():
                hup.clear()
                engine.tls_reload()
                try:
                    runner.reload_logging()
                except ImproperlyConfigured as exc:
                    self.stderr.write(f"SIGHUP ignored, keeping the current query log: {exc}")
        report = runner.stop()
        counts = (engine.stats.total(), report.written, report.dropped, report.unwritten, report.not_logged)
        if worker is not None:
            procs.report("stopped", **dict(zip(procs.COUNTS, counts, strict=True)))
        else:
            self.stdout.write(stop_line(*counts))

    def supervise(self, options, stop, hup, processes: int) -> None:
        """--processes N: start N workers on one port, forward signals, restart the dead, sum their counts."""
        try:
            config = EngineConfig.from_settings(options["host"], options["port"])  # its errors before any worker
            procs.port_in_use_check(config.host, config.port)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(
                f"cannot listen for DNS on {config.host}:{config.port} "
                f"(GLORYHOLE_DNS_HOST / --host, GLORYHOLE_DNS_PORT / --port): {exc.strerror or exc}"
            ) from None

        def say(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        supervisor = procs.Supervisor(
            processes, config.host, config.port, wait_report_interval=options["wait_report_interval"],
            stop_timeout=settings.GLORYHOLE_QUERY_LOG_CLOSE_TIMEOUT + procs.STOP_GRACE, say=say,
        )  # fmt: skip
        try:
            ready = supervisor.start(stop)
        except procs.WorkerStartError as exc:
            raise CommandError(f"{exc} (its error is above)") from None
        if ready is None:
            supervisor.stop()
            say("stopped before serving: the database never answered")
            return
        encrypted = "".join(f", {name} on {ready[f'{name}_port']}" for name in ("dot", "doh")
                            if ready.get(f"{name}_port"))  # fmt: skip
        metrics = f"; metrics {ready['metrics']} (worker K on that port + K)" if ready["metrics"] else ""
        say(
            f"listening on {config.host}:{ready['port']} (udp, tcp{encrypted}) as {ready['name']} with {processes} "
            f"processes; upstreams {', '.join(ready['upstreams'])}{metrics}; {compiled.summary()}"
        )
        supervisor.serve(stop, hup)
        totals = supervisor.stop()
        lost = f"; no counts from worker(s) {', '.join(map(str, totals.missing))}" if totals.missing else ""
        say(
            stop_line(totals.queries, totals.written, totals.dropped, totals.unwritten, totals.not_logged)
            + f"; {processes} processes, {totals.restarts} restarts{lost}"
        )
