"""manage.py importblocklist NAME PATH: load a list file into the database."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from dnsengine.blocklists.formats import FORMATS, BlocklistError
from dnsengine.blocklists.importer import blocklist_load


class Command(BaseCommand):
    help = (
        "Load a hosts, plain-domain or Adblock list file into the blocklist NAME, creating it if needed "
        "and replacing its domains. A file that cannot be read, holds no valid domain, is mostly unreadable "
        "or is over GLORYHOLE_BLOCKLIST_MAX_BYTES / GLORYHOLE_BLOCKLIST_MAX_NAMES leaves the list as it was "
        "(exit status 1)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="name of the blocklist to create or update")
        parser.add_argument("path", help="file to load")
        parser.add_argument("--format", choices=FORMATS, default="auto", help="list format (default: auto-detect)")
        parser.add_argument("--disabled", action="store_true", help="mark the list disabled (default: keep as is)")

    def handle(self, *args, **options) -> None:
        name: str = options["name"]
        path = Path(options["path"]).expanduser()
        started = time.monotonic()
        try:
            summary = blocklist_load(
                name,
                path,
                options["format"],
                source=str(path.absolute()),
                enabled=False if options["disabled"] else None,
            )
        except BlocklistError as exc:
            raise CommandError(f'blocklist "{name}" not loaded: {exc}') from exc
        self.stdout.write(self.style.SUCCESS(f"{summary.describe()}; took {time.monotonic() - started:.1f} s"))
