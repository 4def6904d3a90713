"""manage.py importfrom pihole|adguardhome FILE...: switch from Pi-hole or AdGuard Home."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from dnsengine.importers.common import ImportFileError, Outcome, plan_apply

SOURCES = ("pihole", "adguardhome")


class Command(BaseCommand):
    help = (
        "Import lists, allow/block entries, regex rules, local records, clients and groups from Pi-hole "
        "(a Teleporter zip, gravity.db, pihole.toml, setupVars.conf, custom.list) or AdGuard Home "
        "(AdGuardHome.yaml). Creates only what is missing, in one transaction; prints the upstreams to set "
        "in the environment. A file that cannot be read changes nothing (exit status 1)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", choices=SOURCES, help="the program the files come from")
        parser.add_argument("paths", nargs="+", metavar="FILE", help="its files (Pi-hole: one or more)")
        parser.add_argument("--dry-run", action="store_true", help="print what would be created; write nothing")

    def handle(self, *args, **options) -> None:
        paths = [Path(p).expanduser() for p in options["paths"]]
        dry_run: bool = options["dry_run"]
        try:
            if options["source"] == "pihole":
                from dnsengine.importers.pihole import pihole_plan

                plan = pihole_plan(paths)
            else:
                if len(paths) != 1:
                    raise CommandError("adguardhome takes one file: AdGuardHome.yaml")
                from dnsengine.importers.adguard import adguard_plan

                plan = adguard_plan(paths[0])
        except ImportFileError as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        outcome = plan_apply(plan, dry_run=dry_run)
        self._report(outcome, plan.source, dry_run)

    def _report(self, outcome: Outcome, source: str, dry_run: bool) -> None:
        write = self.stdout.write
        if dry_run:
            write(f"Dry run: nothing written. From {source} this would create:")
        for line in outcome.lines:
            write(line)
        for reason, count in sorted(outcome.skipped.items()):
            write(self.style.WARNING(f"skipped {count}: {reason}"))
        for note in outcome.notes:
            write(f"note: {note}")
        if outcome.upstreams:
            write("Upstreams are an environment setting here; put this line in the engine's environment:")
            write(f"  GLORYHOLE_UPSTREAMS={','.join(outcome.upstreams)}")
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(outcome.created.items()))
        summary = outcome.summary() + (f" ({kinds})" if kinds else "")
        if dry_run:
            write(f"Dry run: {summary.replace(' created', ' to create', 1)}")
        else:
            write(self.style.SUCCESS(summary))
            if outcome.created.get("list"):
                write("New lists are fetched by the engine's updater shortly, or now with: manage.py updateblocklists")
