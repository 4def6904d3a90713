"""The site's own app: start-up checks that belong to no feature app."""

from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class GloryholeSiteConfig(AppConfig):
    name = "gloryhole_site"
    verbose_name = "Glory-Hole site"

    def ready(self) -> None:
        from gloryhole_site import filemodes

        filemodes.make_data_dir_private()
        filemodes.make_sqlite_files_private(quiet=False)
        connection_created.connect(filemodes.on_connection_created, dispatch_uid="gloryhole-sqlite-modes")
