"""manage.py ensureadmin: create the first admin account, once.

Run by the `make run` launcher after migrate. With no superuser yet it creates
`admin` with GLORYHOLE_ADMIN_PASSWORD, or a random password printed this one
time; later runs change nothing, so a password someone changed stays changed.
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the 'admin' superuser when no superuser exists (password from GLORYHOLE_ADMIN_PASSWORD or random)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already; nothing to do.")
            return
        username = options["username"]
        password = os.environ.get("GLORYHOLE_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        user = User.objects.filter(username=username).first()
        if user is None:
            User.objects.create_superuser(username=username, email="", password=password)
        else:
            # A plain user of that name exists (created by hand): promote it rather than fail.
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created the admin account: user {username!r}, password {password!r}. "
                    "It is shown only this once: note it, or change it at /admin/password_change/."
                )
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(f"Created the admin account {username!r} with GLORYHOLE_ADMIN_PASSWORD.")
            )
