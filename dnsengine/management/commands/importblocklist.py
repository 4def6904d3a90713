"""manage.py importblocklist NAME PATH: load a list file into the database."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from dnsengine.blocklist import FORMATS, BlocklistError, read_blocklist_file
from dnsengine.blocklist_services import blocklist_import, blocklist_record_error


class Command(BaseCommand):
    help = (
        "Load a hosts, plain-domain or Adblock list file into the blocklist NAME, creating it if needed "
        "and replacing its domains. A file that cannot be read or holds no valid domain leaves the list as it was."
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
            result = read_blocklist_file(path, options["format"])
            summary = blocklist_import(
                name, result, source=str(path.absolute()), enabled=False if options["disabled"] else None
            )
        except BlocklistError as exc:
            blocklist_record_error(name, str(exc))
            raise CommandError(f'blocklist "{name}" not loaded: {exc}') from exc
        self.stdout.write(self.style.SUCCESS(f"{summary.describe()}; took {time.monotonic() - started:.1f} s"))
