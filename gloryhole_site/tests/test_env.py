"""Settings from the environment: typed values, or an error naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gloryhole_site.env import (
    database_from_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_origins,
    env_proxy_ssl_header,
    env_str,
    env_time_zone,
)

VAR = "GLORYHOLE_TEST_VALUE"


@pytest.fixture
def unset(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)


def refusal(monkeypatch, raw: str, reader, *args, **kwargs) -> str:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as info:
        reader(VAR, *args, **kwargs)
    return str(info.value)


# -- env_str -----------------------------------------------------------------------------


def test_env_str_reads_the_value_or_the_default(monkeypatch, unset):
    assert env_str(VAR, "fallback") == "fallback"

    monkeypatch.setenv(VAR, " as is ")

    assert env_str(VAR, "fallback") == " as is "


# -- env_bool ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "Yes", "on", " on "])
def test_env_bool_reads_true(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    assert env_bool(VAR, False) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "NO", "off", " off "])
def test_env_bool_reads_false(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    assert env_bool(VAR, True) is False


def test_env_bool_gives_the_default_when_unset(unset):
    assert env_bool(VAR, True) is True
    assert env_bool(VAR, False) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enabled"])
def test_env_bool_refuses_anything_else_naming_the_variable(monkeypatch, raw):
    message = refusal(monkeypatch, raw, env_bool, False)

    assert message == f"{VAR}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)"


# -- env_int -----------------------------------------------------------------------------


def test_env_int_gives_the_default_when_unset_or_blank(monkeypatch, unset):
    assert env_int(VAR, 7) == 7

    monkeypatch.setenv(VAR, "  ")

    assert env_int(VAR, 7) == 7


@pytest.mark.parametrize(("raw", "expected"), [("42", 42), (" 42 ", 42), ("-3", -3), ("0", 0)])
def test_env_int_reads_a_whole_number(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)

    assert env_int(VAR, 7) == expected


@pytest.mark.parametrize("raw", ["4.5", "ten", "1e3", "0x10"])
def test_env_int_refuses_what_is_not_a_whole_number(monkeypatch, raw):
    assert refusal(monkeypatch, raw, env_int, 7) == f"{VAR}={raw!r} is not a whole number"


def test_env_int_accepts_its_bounds(monkeypatch):
    monkeypatch.setenv(VAR, "1")
    assert env_int(VAR, 7, minimum=1, maximum=10) == 1

    monkeypatch.setenv(VAR, "10")
    assert env_int(VAR, 7, minimum=1, maximum=10) == 10


def test_env_int_refuses_values_out_of_range(monkeypatch):
    assert refusal(monkeypatch, "0", env_int, 7, minimum=1) == f"{VAR}=0 is below the minimum of 1"
    assert refusal(monkeypatch, "65536", env_int, 7, maximum=65535) == f"{VAR}=65536 is above the maximum of 65535"


# -- env_float ---------------------------------------------------------------------------


def test_env_float_gives_the_default_when_unset_or_blank(monkeypatch, unset):
    assert env_float(VAR, 2.5) == 2.5

    monkeypatch.setenv(VAR, "")

    assert env_float(VAR, 2.5) == 2.5


@pytest.mark.parametrize(("raw", "expected"), [("0.5", 0.5), (" 3 ", 3.0), ("1e-2", 0.01)])
def test_env_float_reads_a_number(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)

    assert env_float(VAR, 2.5) == expected


def test_env_float_refuses_what_is_not_a_number(monkeypatch):
    assert refusal(monkeypatch, "fast", env_float, 2.5) == f"{VAR}='fast' is not a number"


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "Infinity"])
def test_env_float_refuses_nan_and_infinity(monkeypatch, raw):
    assert refusal(monkeypatch, raw, env_float, 2.5) == f"{VAR}={raw!r} is not a finite number"


def test_env_float_refuses_values_out_of_range(monkeypatch):
    assert refusal(monkeypatch, "0.01", env_float, 2.0, minimum=0.05) == f"{VAR}=0.01 is below the minimum of 0.05"
    assert refusal(monkeypatch, "31", env_float, 2.0, maximum=30) == f"{VAR}=31.0 is above the maximum of 30"


# -- env_choice --------------------------------------------------------------------------

LEVELS = ("DEBUG", "INFO", "WARNING")


def test_env_choice_gives_the_default_when_unset_or_blank(monkeypatch, unset):
    assert env_choice(VAR, "INFO", LEVELS) == "INFO"

    monkeypatch.setenv(VAR, " ")

    assert env_choice(VAR, "INFO", LEVELS) == "INFO"


@pytest.mark.parametrize("raw", ["debug", "DEBUG", " Debug "])
def test_env_choice_matches_without_regard_to_case_and_returns_the_choice_as_spelt(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    assert env_choice(VAR, "INFO", LEVELS) == "DEBUG"


def test_env_choice_refuses_anything_else_naming_the_variable_and_the_choices(monkeypatch):
    assert refusal(monkeypatch, "LOUD", env_choice, "INFO", LEVELS) == f"{VAR}='LOUD': use one of DEBUG, INFO, WARNING"


# -- env_time_zone -----------------------------------------------------------------------


def test_env_time_zone_gives_the_default_when_unset(unset):
    assert env_time_zone(VAR, "UTC") == "UTC"


@pytest.mark.parametrize("raw", ["Europe/Paris", "UTC", "America/Argentina/Buenos_Aires"])
def test_env_time_zone_reads_a_zone_name(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    assert env_time_zone(VAR, "UTC") == raw


@pytest.mark.parametrize(
    "raw", ["Mars/Olympus", "../../etc/passwd", "/etc/passwd", "Europe/", "Europe/../Europe/Paris"]
)
def test_env_time_zone_refuses_what_is_not_a_zone_naming_the_variable(monkeypatch, raw):
    message = refusal(monkeypatch, raw, env_time_zone, "UTC")

    assert message.startswith(f"{VAR}={raw!r} is not a time zone")


# -- database_from_url -------------------------------------------------------------------

BASE = Path("/srv/gloryhole")


def test_a_relative_sqlite_url_lives_under_the_base_dir():
    db = database_from_url("DATABASE_URL", "sqlite:///data/gh.sqlite3", BASE)

    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == "/srv/gloryhole/data/gh.sqlite3"


def test_an_absolute_sqlite_url_keeps_its_path_and_uses_wal():
    db = database_from_url("DATABASE_URL", "sqlite:////var/lib/gloryhole/gh.sqlite3", BASE)

    assert db["NAME"] == "/var/lib/gloryhole/gh.sqlite3"
    assert db["OPTIONS"]["timeout"] == 20
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "PRAGMA journal_mode=WAL;" in db["OPTIONS"]["init_command"]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://gh.sqlite3"])
def test_a_sqlite_url_without_a_path_is_refused(url):
    with pytest.raises(ImproperlyConfigured) as info:
        database_from_url("DATABASE_URL", url, BASE)

    assert str(info.value) == f"DATABASE_URL={url!r}: use sqlite:///relative/path or sqlite:////absolute/path"


def test_a_postgres_url_gives_every_connection_part():
    url = "postgres://glory%40hole:p%40ss%2Fw%3Ard@db.example.org:5433/glory%20hole"

    db = database_from_url("DATABASE_URL", url, BASE)

    assert db == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "glory hole",
        "USER": "glory@hole",
        "PASSWORD": "p@ss/w:rd",
        "HOST": "db.example.org",
        "PORT": "5433",
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"connect_timeout": 5},
    }


def test_postgres_url_parameters_go_to_libpq_and_conn_max_age_to_django():
    url = "postgres://db.example.org/gloryhole?sslmode=require&connect_timeout=2&conn_max_age=0"

    db = database_from_url("DATABASE_URL", url, BASE)

    assert db["OPTIONS"] == {"sslmode": "require", "connect_timeout": "2"}
    assert db["CONN_MAX_AGE"] == 0


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_a_bad_conn_max_age_is_refused(value):
    url = f"postgres://u:secret@db.example.org/gloryhole?conn_max_age={value}"

    with pytest.raises(ImproperlyConfigured) as info:
        database_from_url("DATABASE_URL", url, BASE)

    assert "conn_max_age" in str(info.value) and "secret" not in str(info.value)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "pgsql"])
def test_every_postgres_scheme_spelling_is_read(scheme):
    db = database_from_url("DATABASE_URL", f"{scheme}://db.example.org/gloryhole", BASE)

    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "django.db.backends.postgresql",
        "gloryhole",
        "",
        "",
        "db.example.org",
        "",
    )


@pytest.mark.parametrize("url", ["postgres://db.example.org", "postgres://db.example.org/"])
def test_a_postgres_url_without_a_database_is_refused(url):
    with pytest.raises(ImproperlyConfigured) as info:
        database_from_url("DATABASE_URL", url, BASE)

    assert str(info.value) == f"DATABASE_URL={url!r} names no database"


@pytest.mark.parametrize("url", ["mysql://db/gloryhole", "gh.sqlite3", "/var/lib/gh.sqlite3", ""])
def test_a_url_with_another_scheme_is_refused(url):
    with pytest.raises(ImproperlyConfigured) as info:
        database_from_url("DATABASE_URL", url, BASE)

    assert str(info.value) == f"DATABASE_URL={url!r}: the scheme must be sqlite:// or postgres://"


@pytest.mark.parametrize("port", ["fivefourthree", "99999"])
def test_a_postgres_url_with_a_bad_port_is_refused_naming_the_variable(port):
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_URL"):
        database_from_url("DATABASE_URL", f"postgres://gh@db.example.org:{port}/gloryhole", BASE)


# -- lists, networks, origins, the proxy's scheme header -------------------------------------


def test_env_list_drops_blanks(monkeypatch, unset):
    assert env_list(VAR, "") == []
    monkeypatch.setenv(VAR, " a, ,b ,")
    assert env_list(VAR, "") == ["a", "b"]


def test_env_networks_reads_addresses_and_networks(monkeypatch):
    monkeypatch.setenv(VAR, "127.0.0.1, 10.0.0.0/8, ::1, 192.168.1.7/24")
    assert [str(n) for n in env_networks(VAR)] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128", "192.168.1.0/24"]


@pytest.mark.parametrize("raw", ["nginx", "10.0.0.0/33", "300.1.1.1", "*"])
def test_env_networks_refuses_what_is_not_an_address(monkeypatch, raw):
    message = refusal(monkeypatch, raw, env_networks)
    assert VAR in message and raw in message


def test_env_origins_reads_scheme_and_host(monkeypatch):
    monkeypatch.setenv(VAR, "https://dns.example.lan, http://10.0.0.2:8000")
    assert env_origins(VAR) == ["https://dns.example.lan", "http://10.0.0.2:8000"]


@pytest.mark.parametrize("raw", ["dns.example.lan", "ftp://dns.example.lan", "https://", "https://a.lan/path"])
def test_env_origins_refuses_what_is_not_an_origin(monkeypatch, raw):
    assert VAR in refusal(monkeypatch, raw, env_origins)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", None),
        ("X-Forwarded-Proto", ("HTTP_X_FORWARDED_PROTO", "https")),
        ("x-forwarded-ssl=on", ("HTTP_X_FORWARDED_SSL", "on")),
    ],
)
def test_env_proxy_ssl_header_names_the_meta_key(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)
    assert env_proxy_ssl_header(VAR) == expected


@pytest.mark.parametrize("raw", ["X Forwarded", "X_Forwarded_Proto", "=https"])
def test_env_proxy_ssl_header_refuses_a_bad_header_name(monkeypatch, raw):
    assert VAR in refusal(monkeypatch, raw, env_proxy_ssl_header)
