"""manage.py updateblocklists [--force] [--due] [NAME...]: refresh subscribed lists from their URL."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from dnsengine.blocklists.importer import FAILED, SKIPPED, UPDATED, UpdateOutcome, blocklists_update


class Command(BaseCommand):
    help = (
        "Download the blocklists that have a URL (every enabled one, or those named) and load what changed, "
        "printing one line per list. A list that cannot be downloaded or holds no valid domain keeps its "
        "contents; the error is stored on it and the command exits with status 1. With --verbosity 0 the "
        "lines go to the log instead (what the engine's scheduled updates run)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="lists to update (default: every enabled one)")
        parser.add_argument("--force", action="store_true", help="download and reload even if nothing changed")
        parser.add_argument("--due", action="store_true", help="only lists whose scheduled update has come")

    def handle(self, *args, **options) -> None:
        names: list[str] = options["names"]
        quiet = options["verbosity"] == 0
        self._bar = None
        outcomes = blocklists_update(
            names or None,
            force=options["force"],
            due_only=options["due"] and not names,
            # A progress bar on a terminal only: cron mail and logs get the summary lines.
            progress_for=self._progress_bar if self.stderr.isatty() and not quiet else None,
            # Quiet: blocklists_update logs each list's line itself, once.
            on_outcome=None if quiet else self._report,
        )
        failed = [o for o in outcomes if o.status == FAILED or o.detail == "no such list"]
        if quiet:
            if failed:
                # Like makemigrations --check: the status says it, the log lines said why.
                sys.exit(1)
            return
        for outcome in outcomes:
            if outcome.detail == "no such list":
                self._report(outcome)
        if not outcomes:
            self.stdout.write("no list is due" if options["due"] else "no list to update: none has a URL")
        if failed:
            raise CommandError(f"{len(failed)} of {len(outcomes)} lists not updated")

    def _report(self, outcome: UpdateOutcome) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        style = {UPDATED: self.style.SUCCESS, FAILED: self.style.ERROR, SKIPPED: self.style.WARNING}.get(outcome.status)
        line = outcome.describe()
        self.stdout.write(style(line) if style else line)

    def _progress_bar(self, blocklist):
        from tqdm import tqdm

        # tqdm draws with "\r", which OutputWrapper would end with a newline: give it the stream itself.
        bar = self._bar = tqdm(
            desc=blocklist.name, unit="B", unit_scale=True, unit_divisor=1024, leave=False, file=self.stderr._out
        )

        def update(received: int, total: int | None) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(received - bar.n)

        return update
