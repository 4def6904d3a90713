"""The local records' value syntax, the hosts-file parser and the lookup tables, without sockets."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from dnslib import QTYPE

from dnsengine.core.localrecords import (
    LocalRecords,
    RecordError,
    parse_hosts_records,
    parse_owner,
    parse_txt,
    parse_value,
    txt_text,
)
from dnsengine.models import LocalRecord


@pytest.mark.parametrize(
    ("value", "strings"),
    [
        ("hello world", (b"hello world",)),
        ('say "hi"', (b'say "hi"',)),  # plain text keeps its quotes
        ('"one" "two"', (b"one", b"two")),
        ('"a \\"b\\" \\\\ c"', (b'a "b" \\ c',)),
        ('""', (b"",)),
        ("caf\u00e9", ("caf\u00e9".encode(),)),
        ('"' + "x" * 255 + '" "y"', (b"x" * 255, b"y")),
    ],
)
def test_it_parses_txt_strings(value, strings):
    assert parse_txt(value) == strings
    assert parse_txt(txt_text(strings)) == strings  # the canonical text reads back the same


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x" * 256, "256 bytes, more than 255"),
        ("\u00e9" * 128, "256 bytes"),  # 128 characters, 256 bytes
        ('"open', "not closed"),
        ('"a"b', "a space must separate"),
        ('"a" b', "outside double quotes"),
    ],
)
def test_it_refuses_bad_txt_with_a_clear_message(value, message):
    with pytest.raises(RecordError, match=message):
        parse_txt(value)


@pytest.mark.parametrize(
    ("rtype", "value", "canonical"),
    [
        ("MX", " 10   Mail.Lan. ", "10 mail.lan"),
        ("SRV", "0 5 5060 SIP.lan", "0 5 5060 sip.lan"),
        ("SRV", "0 0 0 .", "0 0 0 ."),
        ("PTR", "NAS.lan.", "nas.lan"),
        ("AAAA", "FD00:0::1", "fd00::1"),
    ],
)
def test_it_normalises_values(rtype, value, canonical):
    assert parse_value(rtype, value) == canonical


@pytest.mark.parametrize(
    ("rtype", "value", "message"),
    [
        ("MX", "mail.lan", "preference and a mail server name"),
        ("MX", "70000 mail.lan", "preference must be a whole number"),
        ("MX", "10 bad_name!", "not a valid mail server name"),
        ("SRV", "0 5 sip.lan", "priority weight port target"),
        ("SRV", "0 5 port sip.lan", "port must be a whole number"),
        ("PTR", "-bad-", "not a valid domain name"),
        ("A", "fd00::1", "not an IPv4 address"),
        ("AAAA", "10.0.0.1", "not an IPv6 address"),
    ],
)
def test_it_refuses_bad_values_with_a_clear_message(rtype, value, message):
    with pytest.raises(RecordError, match=message):
        parse_value(rtype, value)


def test_record_names_take_wildcards_and_addresses_for_ptr():
    assert parse_owner("*.Dev.Lan.") == "*.dev.lan"
    assert parse_owner("192.168.1.10", "PTR") == "10.1.168.192.in-addr.arpa"
    assert parse_owner("fd00::1", "PTR").endswith(".d.f.ip6.arpa")
    for bad in ("a.*.lan", "*", "**.lan"):
        with pytest.raises(RecordError):
            parse_owner(bad)


@pytest.mark.django_db
def test_the_model_reports_each_field_error():
    with pytest.raises(ValidationError) as exc:
        LocalRecord(name="lan", type="MX", value="mail.lan").full_clean()
    assert "preference and a mail server name" in str(exc.value.message_dict["value"])
    with pytest.raises(ValidationError) as exc:
        LocalRecord(name="a.*.lan", type="A", value="10.0.0.1").full_clean()
    assert "wildcard" in str(exc.value.message_dict["name"])
    record = LocalRecord(name="txt.lan", type="TXT", value='"x" "y"')
    record.full_clean()
    assert record.value == '"x" "y"'


def test_the_hosts_parser_counts_malformed_lines_and_keeps_the_rest():
    text = "\n".join(
        [
            "# comment",
            "127.0.0.1 localhost",
            "192.168.1.10  nas  nas.lan   # trailing",
            "fe80::1%eth0 link.lan",
            "300.1.1.1 broken.lan",
            "10.0.0.1",
            "10.0.0.2 bad_name!",
            "",
        ]
    )
    parsed = parse_hosts_records(text)
    assert [(r[0], r[1], r[2], r[4]) for r in parsed.rows] == [
        ("localhost", "A", "127.0.0.1", 2),
        ("nas", "A", "192.168.1.10", 3),
        ("nas.lan", "A", "192.168.1.10", 3),
        ("link.lan", "AAAA", "fe80::1", 4),
    ]
    assert parsed.bad_lines == (5, 6, 7)
    assert not parsed.truncated
    assert parse_hosts_records(text, max_entries=2).truncated


def test_the_tables_keep_the_common_case_at_one_lookup():
    local = LocalRecords.build([("nas.lan", "A", "10.0.0.1", 60)])
    assert local.wildcards == {}  # so the resolver never walks for a name without a record
    assert set(local.records) == {"nas.lan", "1.0.0.10.in-addr.arpa"}
    wild = LocalRecords.build([("*.dev.lan", "A", "10.0.0.5", 60), ("*.x.dev.lan", "TXT", "t", 60)])
    assert set(wild.wildcards) == {"dev.lan", "x.dev.lan"}
    assert QTYPE.A in wild.lookup("a.b.c.dev.lan")
    assert QTYPE.TXT in wild.lookup("y.x.dev.lan")
    assert wild.lookup("dev.lan") is None and wild.lookup("other.lan") is None
    assert "5.0.0.10.in-addr.arpa" not in wild.records  # no PTR for a wildcard's address


def test_the_table_wins_over_the_hosts_file_for_a_name_and_type():
    hosts = parse_hosts_records("10.0.0.9 nas.lan\n10.0.0.8 www.lan\nfd00::9 nas.lan\n").rows
    local = LocalRecords.build([("nas.lan", "A", "10.0.0.1", 60), ("www.lan", "CNAME", "nas.lan", 60)], hosts)
    assert [a[0] for a in local.records["nas.lan"][QTYPE.A]] == ["10.0.0.1"]
    assert [a[0] for a in local.records["nas.lan"][QTYPE.AAAA]] == ["fd00::9"]  # another type: the file's
    assert QTYPE.A not in local.records["www.lan"]  # a CNAME leaves no room for the file's address
    assert local.hosts_count == 1


def test_a_table_row_that_bypassed_validation_is_left_out():
    local = LocalRecords.build([("bad.lan", "A", "not-an-address", 60), ("mx.lan", "MX", "mail.lan", 60),
                                ("ok.lan", "A", "10.0.0.1", 60)])  # fmt: skip
    assert set(local.records) == {"ok.lan", "1.0.0.10.in-addr.arpa"}
