"""manage.py ensureadmin: create the first admin account, once.

Run by the `make run` launcher as the last step before the engine and the web
start, so a generated password is the last thing on screen before their
"listening" lines. With no superuser yet it creates `admin` with
GLORYHOLE_ADMIN_PASSWORD, or a random password shown this one time in a box;
later runs change nothing (a password someone changed stays changed) and say
in one line how to reset it.
"""

from __future__ import annotations

import os
import secrets
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


def box(lines: list[str]) -> str:
    """Plain ASCII, so it survives any terminal, log file or copy-paste."""
    width = max(len(line) for line in lines)
    border = "+" + "-" * (width + 4) + "+"
    return "\n".join([border, *(f"|  {line.ljust(width)}  |" for line in lines), border])


def manage_py() -> str:
    """How to run manage.py again, as the user would type it: `.venv/bin/python manage.py`."""
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    return f"{python} manage.py"


class Command(BaseCommand):
    help = "Create the 'admin' superuser when no superuser exists (password from GLORYHOLE_ADMIN_PASSWORD or random)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--login-url", default="", help="where to sign in, shown with a generated password")

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        existing = User.objects.filter(is_superuser=True).order_by("pk").values_list("username", flat=True).first()
        if existing is not None:
            self.stdout.write(
                f"Admin account {existing!r} exists. Forgot its password? {manage_py()} changepassword {existing}"
            )
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
        if not generated:
            self.stdout.write(f"Created the admin account {username!r} with GLORYHOLE_ADMIN_PASSWORD.")
            return
        sign_in = f"Sign in at {options['login_url']}" if options["login_url"] else "Sign in to the web UI"
        self.stdout.write(
            box(
                [
                    "First run: an admin account for the web UI was created.",
                    "",
                    f"    user:      {username}",
                    f"    password:  {password}",
                    "",
                    "It is shown only this once: note it now.",
                    f"{sign_in}; to set another password later:",
                    f"    {manage_py()} changepassword {username}",
                ]
            )
        )
