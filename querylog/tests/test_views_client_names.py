"""Client names and groups in the history (filters, rows, CSV) and the dashboard's top clients."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from dnsengine.models import Client
from querylog.models import ClientRollup, QueryLog

URL = reverse("querylog-history")


def logged(domain: str, client: str = "192.0.2.10", name: str = "", group: str = "", *, ago=timedelta(0)) -> QueryLog:
    return QueryLog.objects.create(
        timestamp=timezone.now() - ago, client=client, protocol="udp", domain=domain, qtype="A", rcode="NOERROR",
        status="forwarded", client_name=name, client_group=group,
    )  # fmt: skip


def domains_of(response) -> list[str]:
    return [row["domain"] for row in response.context["page"].rows]


def test_it_filters_by_client_name(viewer_web):
    logged("a.example", "192.0.2.10", "Anna's phone", "Kids")
    logged("b.example", "192.0.2.11", "TV", "Default")
    assert domains_of(viewer_web.get(URL, {"client_name": "Anna's phone"})) == ["a.example"]


def test_it_filters_by_group(viewer_web):
    logged("a.example", "192.0.2.10", "Anna's phone", "Kids")
    logged("b.example", "192.0.2.11", "TV", "Default")
    logged("c.example", "192.0.2.12", "Ben's tablet", "Kids")
    assert domains_of(viewer_web.get(URL, {"client_group": "Kids"})) == ["c.example", "a.example"]


def test_a_name_or_group_search_alone_covers_the_last_24_hours(viewer_web):
    logged("new.example", name="TV", ago=timedelta(hours=1))
    logged("old.example", name="TV", ago=timedelta(hours=30))
    response = viewer_web.get(URL, {"client_name": "TV"})
    assert domains_of(response) == ["new.example"]
    assert response.context["filter"].scan_window_applied
    # With the IP's index to walk, the whole log is searched.
    assert domains_of(viewer_web.get(URL, {"client_name": "TV", "client": "192.0.2.10"})) == [
        "new.example",
        "old.example",
    ]


def test_a_name_search_over_more_than_24_hours_is_refused(viewer_web):
    response = viewer_web.get(URL, {"client_group": "Kids", "last": "7d"})
    assert response.context["page"] is None
    assert "covers at most 24 hours" in response.content.decode()


def test_rows_show_the_name_next_to_the_ip_and_the_group(viewer_web):
    logged("a.example", "192.0.2.10", "Anna's phone", "Kids")
    html = viewer_web.get(URL).content.decode()
    assert "client_name=Anna%27s%20phone" in html and "Anna&#x27;s phone</a>" in html
    assert "client_group=Kids" in html and ">192.0.2.10</a>" in html


def test_the_csv_export_has_the_client_name_and_group(viewer_web):
    logged("a.example", "192.0.2.10", "Anna's phone", "Kids")
    response = viewer_web.get(reverse("querylog-export"))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert (rows[0]["client"], rows[0]["client_name"], rows[0]["client_group"]) == (
        "192.0.2.10",
        "Anna's phone",
        "Kids",
    )


def test_the_dashboards_top_clients_show_names(viewer_web):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for client, n in (("192.0.2.10", 30), ("192.0.2.20", 20), ("192.0.2.30", 10)):
        ClientRollup.objects.create(bucket=hour, client=client, count=n)
    Client.objects.create(name="Anna's phone", ip="192.0.2.10")
    logged("a.example", "192.0.2.10", "stale name")
    logged("b.example", "192.0.2.20", "tv.lan")

    response = viewer_web.get(reverse("querylog-dashboard"))

    assert response.context["top_clients"] == [
        ("192.0.2.10", "Anna's phone", 30),
        ("192.0.2.20", "", 20),  # known from the log only: the dashboard never reads it
        ("192.0.2.30", "", 10),
    ]
    assert "Anna&#x27;s phone" in response.content.decode()
