"""manage.py forgetclient <ip-or-name>: delete a client's rows and its share of the rollups."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from querylog.forget import FORGET_BATCH, client_forget


class Command(BaseCommand):
    help = (
        "Delete every query log row of one client (an IP, or a name: every address logged or configured under it) "
        "and take its share out of the rollups; safe while engines write."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("client", help="an IP address, or a client name")
        parser.add_argument("--batch", type=int, default=FORGET_BATCH, help=f"rows per transaction ({FORGET_BATCH})")

    def handle(self, *args, client: str, batch: int, **options) -> None:
        if batch < 1:
            raise CommandError("--batch must be 1 or more")
        # A short pause between batches lets a running engine's writers in.
        report = client_forget(client, batch=batch, pause=0.01)
        if not report.clients:
            raise CommandError(f"{client!r}: no client by that address or name (0.0.0.0 is the hidden client)")
        self.stdout.write(
            f"Forgot {', '.join(report.clients)}: {report.rows} rows, {report.client_rollups} hourly client counts "
            f"of expired rows, {report.summaries} stored summaries (rebuilt on the next dashboard view)."
        )
