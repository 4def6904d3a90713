from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dnsengine.models import EngineStatus

URL = reverse("engine-status")


def engine_row(name: str = "127.0.0.1:5300", age: float = 1.0, **fields) -> EngineStatus:
    now = timezone.now()
    defaults = dict(
        hostname=socket.gethostname(),
        pid=1234,
        started_at=now - timedelta(hours=1),
        heartbeat_at=now - timedelta(seconds=age),
        qps=12.5,
        buffer_size=250,
        buffer_capacity=1000,
        drops=5,
        written=995,
        write_rate=11.0,
        workers=2,
        mode="pool",
    )
    defaults.update(fields)
    return EngineStatus.objects.create(name=name, **defaults)


@pytest.mark.django_db
def test_it_redirects_anonymous_users_to_login(web):
    assert web.get(URL)["Location"].startswith(reverse("login"))


def test_it_shows_fill_level_drops_writes_and_workers(viewer_web, settings):
    settings.GLORYHOLE_METRICS_PORT = 9153
    engine_row()
    response = viewer_web.get(URL, HTTP_HOST="127.0.0.1:8000")
    html = response.content.decode()
    assert 'value="25.0" data-field="bar"' in html  # a <meter>: no inline style under the CSP
    assert ">up<" in html
    assert "0.500" in html  # drop share: 5 of 1000 entries
    assert '(<span data-field="mode">pool</span>)' in html
    assert 'href="http://127.0.0.1:9153/metrics"' in html
    assert "status.js" in html


def test_an_engine_silent_for_more_than_ten_seconds_is_down(viewer_web):
    engine_row("a:53", age=3)
    engine_row("b:53", age=11)
    engines = {e.row.name: e for e in viewer_web.get(URL).context["engines"]}
    assert engines["a:53"].down is False
    assert engines["b:53"].down is True


def test_the_metrics_link_uses_the_browser_host_for_a_local_engine(viewer_web, settings):
    settings.GLORYHOLE_METRICS_PORT = 9153
    settings.ALLOWED_HOSTS = ["gloryhole.lan"]
    engine_row("local:53")
    engine_row("remote:53", hostname="dns2.lan")
    engines = {e.row.name: e for e in viewer_web.get(URL, HTTP_HOST="gloryhole.lan:8000").context["engines"]}
    assert engines["local:53"].metrics_url == "http://gloryhole.lan:9153/metrics"
    assert engines["remote:53"].metrics_url == "http://dns2.lan:9153/metrics"


def test_no_engine_yet_says_how_to_start_one(viewer_web):
    assert b"No engine has reported yet" in viewer_web.get(URL).content


def test_the_engine_metrics_link_is_off_when_its_port_is(viewer_web, settings):
    settings.GLORYHOLE_METRICS_PORT = 0
    engine_row()
    assert b'<span data-field="metrics_url">off</span>' in viewer_web.get(URL).content


def test_a_zero_capacity_buffer_does_not_divide_by_zero(viewer_web):
    engine_row(buffer_size=0, buffer_capacity=0, written=0, drops=0)
    assert viewer_web.get(URL).status_code == 200


# --- /api/status -------------------------------------------------------------------------


def test_status_reports_each_engine_with_derived_figures(viewer_web):
    now = timezone.now()
    EngineStatus.objects.create(
        name="e1", hostname="h", pid=1, started_at=now, heartbeat_at=now - timedelta(seconds=30),
        buffer_size=10, buffer_capacity=40, drops=1, written=99,
    )  # fmt: skip
    engine = viewer_web.get(reverse("api-status")).json()["engines"][0]
    assert engine["fill_pct"] == 25.0
    assert engine["down"] is True
    assert engine["drop_pct"] == 1.0
    assert engine["heartbeat_age"] >= 30


def test_the_worker_processes_of_one_engine_show_as_one_engine_with_their_counts_summed(viewer_web, settings):
    settings.GLORYHOLE_METRICS_PORT = 9153
    engine_row("dns1/0", age=1, pid=11, queries_total=100, qps=10.0, written=90, drops=1, buffer_size=10)
    engine_row("dns1/1", age=4, pid=12, queries_total=50, qps=5.0, written=45, drops=2, buffer_size=20)
    engine_row("other:53", age=1)

    engines = {e.row.name: e for e in viewer_web.get(URL, HTTP_HOST="127.0.0.1:8000").context["engines"]}

    assert sorted(engines) == ["dns1", "other:53"]
    dns1 = engines["dns1"]
    assert (dns1.row.queries_total, dns1.row.qps, dns1.row.written, dns1.row.drops) == (150, 15.0, 135, 3)
    assert dns1.row.buffer_capacity == 2000 and dns1.fill_pct == 1.5
    assert dns1.heartbeat_age == pytest.approx(4, abs=1)  # the worst of the two
    assert [p.row.pid for p in dns1.processes] == [11, 12]
    assert [p.metrics_url for p in dns1.processes] == ["http://127.0.0.1:9153/metrics", "http://127.0.0.1:9154/metrics"]
    html = viewer_web.get(URL, HTTP_HOST="127.0.0.1:8000").content.decode()
    assert html.count('data-engine="dns1"') == 1
    assert 'data-process="dns1/0"' in html and 'data-process="dns1/1"' in html
    assert '<dd data-field="processes">2</dd>' in html


def test_one_silent_worker_shows_its_engine_as_down(viewer_web):
    engine_row("dns1/0", age=1)
    engine_row("dns1/1", age=30)

    (dns1,) = viewer_web.get(URL).context["engines"]

    assert dns1.down is True
    assert [p.down for p in dns1.processes] == [False, True]


def test_the_api_lists_an_engines_processes(viewer_web):
    engine_row("dns1/0", queries_total=7)
    engine_row("dns1/1", queries_total=8)
    engine_row("single:53", queries_total=1)

    engines = {e["name"]: e for e in viewer_web.get(reverse("api-status")).json()["engines"]}

    assert engines["dns1"]["processes"] == 2 and engines["dns1"]["queries_total"] == 15
    assert [p["name"] for p in engines["dns1"]["process_list"]] == ["dns1/0", "dns1/1"]
    assert engines["single:53"]["processes"] == 1 and "process_list" not in engines["single:53"]
