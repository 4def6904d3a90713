from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run() -> str:
    out = StringIO()
    call_command("ensureadmin", stdout=out)
    return out.getvalue()


def test_it_creates_admin_with_a_random_password_printed_once(monkeypatch):
    monkeypatch.delenv("GLORYHOLE_ADMIN_PASSWORD", raising=False)
    first = run()
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.is_staff
    password = first.split("password '")[1].split("'")[0]
    assert len(password) >= 12
    assert user.check_password(password)
    second = run()
    assert password not in second
    assert "nothing to do" in second


def test_it_takes_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("GLORYHOLE_ADMIN_PASSWORD", "correct horse battery")
    out = run()
    assert "correct horse battery" not in out
    assert get_user_model().objects.get(username="admin").check_password("correct horse battery")


def test_it_leaves_an_existing_superuser_alone(monkeypatch):
    monkeypatch.setenv("GLORYHOLE_ADMIN_PASSWORD", "ignored-password")
    get_user_model().objects.create_superuser("root", password="kept-password")
    run()
    assert not get_user_model().objects.filter(username="admin").exists()
    assert get_user_model().objects.get(username="root").check_password("kept-password")
