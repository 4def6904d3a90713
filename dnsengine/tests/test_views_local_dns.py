"""The local DNS page: list, search, add, edit, disable, delete; who may; bad input per type; the hosts file."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from dnsengine.models import LocalRecord
from dnsengine.services import config_generation_current

URL = reverse("dnsengine-local-dns")


def post(web, name: str, data: dict | None = None, pk: int | None = None):
    return web.post(reverse(name, args=[pk] if pk is not None else []), data or {}, follow=True)


def record_data(**fields) -> dict:
    return {"name": "nas.lan", "type": "A", "value": "192.168.1.10", "ttl": 300, "enabled": "on", **fields}


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login(web):
    assert web.get(URL)["Location"].startswith(reverse("login"))


def test_viewers_read_the_records_without_forms_and_cannot_change_them(viewer_web):
    record = LocalRecord.objects.create(name="nas.lan", type="A", value="192.168.1.10")
    html = viewer_web.get(URL).content.decode()
    assert "nas.lan" in html and "192.168.1.10" in html and "Local DNS" in html
    assert "New record" not in html and "delete" not in html
    assert viewer_web.post(reverse("dnsengine-local-record-add"), record_data(name="x.lan")).status_code == 403
    assert viewer_web.post(reverse("dnsengine-local-record-delete", args=[record.pk])).status_code == 403
    assert LocalRecord.objects.count() == 1


def test_staff_add_edit_disable_and_delete_a_record_each_logged_and_bumped(staff_web):
    generation, entries = config_generation_current(), LogEntry.objects.count()
    page = post(staff_web, "dnsengine-local-record-add", record_data(name="Mail.LAN.", type="MX", value="10  mx.lan"))
    assert "mail.lan MX 10 mx.lan added" in page.content.decode()
    record = LocalRecord.objects.get()
    assert (record.name, record.value) == ("mail.lan", "10 mx.lan")
    assert config_generation_current() > generation and LogEntry.objects.count() == entries + 1

    form = staff_web.get(URL, {"edit": record.pk}).content.decode()
    assert "Edit mail.lan MX" in form and 'value="10 mx.lan"' in form
    edited = record_data(name="mail.lan", type="MX", value="20 mx.lan")
    post(staff_web, "dnsengine-local-record-edit", edited, record.pk)
    record.refresh_from_db()
    assert record.value == "20 mx.lan"

    post(staff_web, "dnsengine-local-record-toggle", pk=record.pk)
    record.refresh_from_db()
    assert not record.enabled
    generation = config_generation_current()
    post(staff_web, "dnsengine-local-record-delete", pk=record.pk)
    assert not LocalRecord.objects.exists()
    assert config_generation_current() > generation
    assert LogEntry.objects.count() == entries + 4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "A", "value": "fd00::1"}, "not an IPv4 address"),
        ({"type": "AAAA", "value": "10.0.0.1"}, "not an IPv6 address"),
        ({"type": "CNAME", "value": "nas.lan"}, "cannot point at itself"),
        ({"type": "PTR", "value": "bad name"}, "not a valid domain name"),
        ({"type": "TXT", "value": "x" * 300}, "more than 255"),
        ({"type": "TXT", "value": '"open'}, "not closed"),
        ({"type": "MX", "value": "mail.lan"}, "preference and a mail server name"),
        ({"type": "SRV", "value": "1 2 sip.lan"}, "priority weight port target"),
        ({"type": "SRV", "value": "1 2 99999 sip.lan"}, "port must be a whole number"),
        ({"name": "a.*.lan"}, "a wildcard is written"),
        ({"ttl": 999999}, "604800"),
    ],
)
def test_bad_input_is_refused_with_the_field_message(staff_web, fields, message):
    page = post(staff_web, "dnsengine-local-record-add", record_data(**fields)).content.decode()
    assert "Not added" in page and message in page.replace("&quot;", '"').replace("&#x27;", "'")
    assert not LocalRecord.objects.exists()


def test_a_duplicate_record_is_refused(staff_web):
    LocalRecord.objects.create(name="nas.lan", type="A", value="192.168.1.10")
    page = post(staff_web, "dnsengine-local-record-add", record_data()).content.decode()
    assert "already has this A record" in page
    assert LocalRecord.objects.count() == 1


def test_search_filters_by_name_and_value(staff_web):
    LocalRecord.objects.create(name="camera.lan", type="A", value="192.168.1.10")
    LocalRecord.objects.create(name="printer.lan", type="A", value="192.168.1.20")
    html = staff_web.get(URL, {"q": "1.20"}).content.decode()
    assert "printer.lan" in html and "camera.lan" not in html
    assert "camera.lan" in staff_web.get(URL, {"q": "CAMERA"}).content.decode()


def test_the_hosts_file_records_are_shown_read_only_with_their_source(viewer_web, settings, tmp_path):
    path = tmp_path / "hosts"
    path.write_text("# home\n192.168.1.1 router.lan\nbroken\n")
    settings.GLORYHOLE_LOCAL_HOSTS_FILE = str(path)
    html = viewer_web.get(URL).content.decode()
    assert "From the hosts file" in html and "router.lan" in html and "hosts file, line 2" in html
    assert "1 malformed line skipped: 3" in html


def test_the_admin_accepts_the_new_types_and_reports_bad_values(admin_client):
    url = reverse("admin:dnsengine_localrecord_add")
    data = {"name": "_sip._udp.lan", "type": "SRV", "value": "0 5 5060 sip.lan", "ttl": 300, "enabled": "on"}
    assert admin_client.post(url, data).status_code == 302
    assert LocalRecord.objects.get().value == "0 5 5060 sip.lan"
    page = admin_client.post(url, {**data, "type": "MX", "value": "mail.lan"}).content.decode()
    assert "preference and a mail server name" in page.replace("&quot;", '"')
