"""Delete query log rows (and rollups) older than the retention window, in small batches."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from querylog.retention import querylog_purge


class Command(BaseCommand):
    help = (
        "Delete query log rows older than N days (default GLORYHOLE_QUERY_LOG_RETENTION_DAYS) and rollups "
        "older than M days (default GLORYHOLE_ROLLUP_RETENTION_DAYS)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="keep this many days (0 deletes everything); default GLORYHOLE_QUERY_LOG_RETENTION_DAYS",
        )
        parser.add_argument(
            "--rollup-days",
            type=int,
            default=None,
            help="keep this many days of rollups (0 deletes them all); default GLORYHOLE_ROLLUP_RETENTION_DAYS "
            "(where 0 keeps them all)",
        )
        parser.add_argument("--batch", type=int, default=5000, help="rows per DELETE (default 5000)")

    def handle(self, *args, days: int | None, rollup_days: int | None, batch: int, **options) -> None:
        if days is None:
            days = settings.GLORYHOLE_QUERY_LOG_RETENTION_DAYS
        if rollup_days is None:
            rollup_days = settings.GLORYHOLE_ROLLUP_RETENTION_DAYS or None
        if days < 0 or (rollup_days is not None and rollup_days < 0):
            raise CommandError("--days and --rollup-days must be 0 or more")
        if batch < 1:
            raise CommandError("--batch must be 1 or more")
        # A short pause between batches lets a running engine's writers in.
        deleted = querylog_purge(days, batch, pause=0.01, rollup_days=rollup_days)
        self.stdout.write(f"Deleted {deleted} query log rows older than {days} days.")
