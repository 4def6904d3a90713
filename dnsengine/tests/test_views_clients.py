"""The clients page: who is seen (from the rollups), names, groups, rate-limited badges, rename and move."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client as WebClient
from django.urls import reverse
from django.utils import timezone

from dnsengine.models import Client, ClientGroup, EngineStatus
from dnsengine.services import config_generation_current
from querylog.models import ClientRollup, QueryLog

URL = reverse("dnsengine-clients")
ASSIGN = reverse("dnsengine-client-assign")


def hour(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def seen(client: str, queries: int, blocked: int = 0, *, ago: timedelta = timedelta(0)) -> None:
    ClientRollup.objects.create(bucket=hour(timezone.now() - ago), client=client, count=queries, blocked=blocked)


def logged(client: str, name: str, group: str = "", *, at) -> None:
    QueryLog.objects.create(
        timestamp=at, client=client, protocol="udp", domain="example.com", qtype="A", rcode="NOERROR",
        status="forwarded", client_name=name, client_group=group,
    )  # fmt: skip


def engine(name: str, limited: list[str], *, age: float = 0.0) -> None:
    now = timezone.now()
    EngineStatus.objects.create(
        name=name, hostname="h", pid=1, started_at=now, heartbeat_at=now - timedelta(seconds=age), rate_limited=limited
    )


@pytest.fixture
def kids(db) -> ClientGroup:
    return ClientGroup.objects.create(name="Kids")


@pytest.mark.django_db
def test_it_redirects_anonymous_users_to_login(web):
    assert web.get(URL)["Location"].startswith(reverse("login"))


def test_it_lists_clients_of_the_last_24_hours_with_counts_and_blocked_share(viewer_web):
    seen("192.0.2.10", 30, 6)
    seen("192.0.2.10", 10, 4, ago=timedelta(hours=3))
    seen("192.0.2.20", 5)
    seen("192.0.2.99", 50, 50, ago=timedelta(hours=30))  # too old

    rows = viewer_web.get(URL).context["page"].object_list

    assert [(r.ip, r.queries, r.blocked) for r in rows] == [("192.0.2.10", 40, 10), ("192.0.2.20", 5, 0)]
    assert rows[0].blocked_pct == 25.0


def test_it_names_a_client_by_its_client_row_else_by_the_last_logged_name(viewer_web, kids):
    Client.objects.create(name="Anna's phone", ip="192.0.2.10", group=kids)
    now = timezone.now()
    logged("192.0.2.20", "old-name", at=now - timedelta(minutes=5))
    logged("192.0.2.20", "tv.lan", "Default", at=now - timedelta(minutes=1))
    seen("192.0.2.10", 3)
    seen("192.0.2.20", 2)

    response = viewer_web.get(URL)
    rows = {r.ip: r for r in response.context["page"].object_list}

    assert (rows["192.0.2.10"].name, rows["192.0.2.10"].group_name) == ("Anna's phone", "Kids")
    assert rows["192.0.2.20"].name == "tv.lan"
    assert abs((rows["192.0.2.20"].last_seen - (now - timedelta(minutes=1))).total_seconds()) < 1
    html = response.content.decode()
    assert "Anna&#x27;s phone" in html and "tv.lan" in html
    assert "<input" not in html.split("<tbody>")[1]  # a viewer gets no forms


def test_it_lists_configured_clients_not_seen(viewer_web, kids):
    Client.objects.create(name="Laptop", mac="aa:bb:cc:dd:ee:ff", group=kids)
    Client.objects.create(name="Office", cidr="10.0.0.0/24")
    rows = viewer_web.get(URL).context["page"].object_list
    assert sorted((r.identifier, r.name, r.group_name) for r in rows) == [
        ("10.0.0.0/24", "Office", "Default"),
        ("aa:bb:cc:dd:ee:ff", "Laptop", "Kids"),
    ]


def test_a_seen_client_in_an_assigned_network_shows_that_networks_group(viewer_web, kids):
    Client.objects.create(name="Kids' room", cidr="192.0.2.0/28", group=kids)
    seen("192.0.2.5", 1)
    (row,) = [r for r in viewer_web.get(URL).context["page"].object_list if r.ip]
    assert row.group_name == "Kids"


def test_it_marks_the_clients_a_live_engine_rate_limits(viewer_web):
    seen("192.0.2.10", 900)
    seen("192.0.2.20", 5)
    seen("192.0.2.30", 5)
    engine("e1", ["192.0.2.10"])
    engine("gone", ["192.0.2.30"], age=3600)  # a dead engine's list says nothing about now

    response = viewer_web.get(URL)

    limited = {r.ip for r in response.context["page"].object_list if r.rate_limited}
    assert limited == {"192.0.2.10"}
    assert response.content.decode().count(">rate-limited</span>") == 1


def test_staff_rename_and_move_a_seen_client_in_one_post(staff_web, kids):
    seen("192.0.2.10", 3)
    before = config_generation_current()

    response = staff_web.post(ASSIGN, {"ip": "192.0.2.10", "name": "Anna's tablet", "group": kids.pk, "next": URL})

    assert response.status_code == 302 and response["Location"] == URL
    client = Client.objects.get(ip="192.0.2.10")
    assert (client.name, client.group) == ("Anna's tablet", kids)
    assert config_generation_current() > before
    entry = LogEntry.objects.get(object_id=str(client.pk))
    assert "Anna's tablet" in entry.change_message and entry.user.username == "staff"


def test_staff_change_an_existing_client_row(staff_web, kids):
    client = Client.objects.create(name="Laptop", mac="aa:bb:cc:dd:ee:ff")
    staff_web.post(ASSIGN, {"client": client.pk, "name": "Work laptop", "group": kids.pk})
    client.refresh_from_db()
    assert (client.name, client.group, client.mac) == ("Work laptop", kids, "aa:bb:cc:dd:ee:ff")
    assert Client.objects.count() == 1


def test_an_empty_name_or_a_bad_ip_changes_nothing(staff_web, kids):
    for data in (
        {"ip": "192.0.2.10", "name": " ", "group": kids.pk},
        {"ip": "not-an-ip", "name": "x", "group": kids.pk},
    ):
        staff_web.post(ASSIGN, data)
    assert not Client.objects.exists()


def test_viewers_and_anonymous_users_cannot_assign(viewer_web, web, kids):
    assert viewer_web.post(ASSIGN, {"ip": "192.0.2.10", "name": "x", "group": kids.pk}).status_code == 403
    assert web.post(ASSIGN, {"ip": "192.0.2.10", "name": "x", "group": kids.pk})["Location"].startswith(
        reverse("login")
    )
    assert not Client.objects.exists()


def test_assigning_needs_a_csrf_token(staff_user, kids):
    strict = WebClient(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    assert strict.post(ASSIGN, {"ip": "192.0.2.10", "name": "x", "group": kids.pk}).status_code == 403
    assert not Client.objects.exists()


def test_the_staff_page_has_one_form_per_row_with_a_csrf_token(staff_web):
    seen("192.0.2.10", 3)
    html = staff_web.get(URL).content.decode()
    assert 'form="client-1"' in html and 'id="client-1"' in html
    assert "csrfmiddlewaretoken" in html.split('id="client-1"')[1]
