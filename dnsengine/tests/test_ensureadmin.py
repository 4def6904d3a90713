from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("ensureadmin", *args, stdout=out)
    return out.getvalue()


def boxed_password(output: str) -> str:
    lines = output.splitlines()
    assert lines[0].startswith("+--") and lines[-1] == lines[0]
    assert all(line.startswith("| ") and line.endswith(" |") and len(line) == len(lines[0]) for line in lines[1:-1])
    (line,) = [line for line in lines if "password:" in line]
    return line.split("password:")[1].strip(" |")


def test_it_creates_admin_with_a_random_password_shown_once_in_a_box(monkeypatch):
    monkeypatch.delenv("GLORYHOLE_ADMIN_PASSWORD", raising=False)

    first = run("--login-url", "http://127.0.0.1:8000/")

    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.is_staff
    password = boxed_password(first)
    assert len(password) >= 12
    assert user.check_password(password)
    assert "http://127.0.0.1:8000/" in first
    assert "manage.py changepassword admin" in first


def test_later_runs_say_in_one_line_how_to_reset_the_password_and_never_show_it(monkeypatch):
    monkeypatch.delenv("GLORYHOLE_ADMIN_PASSWORD", raising=False)
    password = boxed_password(run())

    second = run()

    assert password not in second
    assert len(second.splitlines()) == 1
    assert "manage.py changepassword admin" in second


def test_it_takes_the_password_from_the_environment_and_does_not_print_it(monkeypatch):
    monkeypatch.setenv("GLORYHOLE_ADMIN_PASSWORD", "correct horse battery")

    out = run()

    assert "correct horse battery" not in out
    assert "GLORYHOLE_ADMIN_PASSWORD" in out
    assert get_user_model().objects.get(username="admin").check_password("correct horse battery")


def test_it_leaves_an_existing_superuser_alone_and_names_it_in_the_reset_hint(monkeypatch):
    monkeypatch.setenv("GLORYHOLE_ADMIN_PASSWORD", "ignored-password")
    get_user_model().objects.create_superuser("root", password="kept-password")

    out = run()

    assert not get_user_model().objects.filter(username="admin").exists()
    assert get_user_model().objects.get(username="root").check_password("kept-password")
    assert "changepassword root" in out
