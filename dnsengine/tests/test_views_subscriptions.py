"""The lists page's subscriptions: subscribe by URL, fetch now with its progress, edit, delete, history."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dnsengine.blocklists.importer import HISTORY_KEEP, blocklist_update
from dnsengine.models import BlockedDomain, Blocklist, BlocklistUpdate, ClientGroup
from gloryhole_site.testing.dnsclient import Client, answers
from gloryhole_site.testing.engine import engine_reload

URL = reverse("dnsengine-blocklists")
SUBSCRIBE = reverse("dnsengine-blocklist-subscribe")


@pytest.fixture(autouse=True)
def fast_fetches(settings):
    settings.GLORYHOLE_BLOCKLIST_FETCH_TIMEOUT = 1.0
    settings.GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS = 3


def subscribe(web, name: str, url: str, *, follow: bool = False, **extra):
    return web.post(SUBSCRIBE, {"name": name, "url": url, "format": "auto", "enabled": "on", **extra}, follow=follow)


def wait_for_fetch(web, blocklist: Blocklist, deadline: float = 10.0) -> dict:
    """Poll the page's JSON endpoint, as its script does, until the fetch is over."""
    url = reverse("api-blocklist-fetch", args=[blocklist.pk])
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        status = web.get(url).json()
        if status["state"] not in ("pending", "running"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"the fetch of {blocklist.name} did not end: {status}")


# --- validation and permissions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://lists.example.com/hosts", "only http:// and https:// addresses can be subscribed (ftp: given)"),
        ("file:///etc/hosts", "only http:// and https:// addresses can be subscribed (file: given)"),
        ("lists.example.com/hosts", "only http:// and https:// addresses can be subscribed (no scheme given)"),
        ("http://exa mple.com/list", "is not a valid web address"),
    ],
)
def test_a_subscription_needs_an_http_or_https_url(staff_web, url, words):
    response = subscribe(staff_web, "new", url)
    assert response.status_code == 400
    assert words in response.content.decode()
    assert not Blocklist.objects.filter(name="new").exists()


def test_a_subscription_needs_a_free_name(staff_web):
    Blocklist.objects.create(name="taken")
    response = subscribe(staff_web, "taken", "http://127.0.0.1:1/list")
    assert response.status_code == 400
    assert "a list named &quot;taken&quot; exists already" in response.content.decode()


def test_a_viewer_may_read_but_not_subscribe_fetch_edit_or_delete(viewer_web):
    blocklist = Blocklist.objects.create(name="ads", url="http://127.0.0.1:1/ads")
    html = viewer_web.get(URL).content.decode()
    assert "Subscribe by URL" not in html and "Fetch now" not in html
    assert subscribe(viewer_web, "new", "http://127.0.0.1:1/new").status_code == 403
    assert viewer_web.post(reverse("dnsengine-blocklist-fetch", args=[blocklist.pk])).status_code == 403
    assert viewer_web.post(reverse("dnsengine-blocklist-delete", args=[blocklist.pk])).status_code == 403
    edit = viewer_web.post(reverse("dnsengine-blocklist", args=[blocklist.pk]), {"name": "x", "url": "http://a.test/"})
    assert edit.status_code == 403
    assert viewer_web.get(reverse("dnsengine-blocklist", args=[blocklist.pk])).status_code == 200
    assert viewer_web.get(reverse("api-blocklist-fetch", args=[blocklist.pk])).json()["state"] == ""
    assert list(Blocklist.objects.filter(name__in=["ads", "new", "x"]).values_list("name", flat=True)) == ["ads"]


# --- fetch now --------------------------------------------------------------------------------


def test_a_second_fetch_now_while_one_is_pending_starts_nothing(staff_web):
    # Inside the test's transaction the fetch thread never starts (it runs on commit): it stays pending.
    blocklist = Blocklist.objects.create(name="ads", url="http://127.0.0.1:1/ads")
    fetch = reverse("dnsengine-blocklist-fetch", args=[blocklist.pk])
    first = staff_web.post(fetch, follow=True)
    assert "Fetching" in first.content.decode()
    second = staff_web.post(fetch, follow=True)
    assert "is being fetched already" in second.content.decode()
    assert b'data-fetch-active="1"' in second.content
    assert b'http-equiv="refresh"' in second.content  # without JavaScript, the page reloads itself


def test_a_fetch_left_behind_by_a_dead_worker_shows_as_interrupted_and_may_start_again(staff_web):
    long_ago = timezone.now() - timedelta(hours=2)
    blocklist = Blocklist.objects.create(
        name="ads", url="http://127.0.0.1:1/ads", fetch_state="running", fetch_requested=long_ago
    )
    status = staff_web.get(reverse("api-blocklist-fetch", args=[blocklist.pk])).json()
    assert status["state"] == "failed" and "interrupted" in status["message"]
    staff_web.post(reverse("dnsengine-blocklist-fetch", args=[blocklist.pk]))
    blocklist.refresh_from_db()
    assert blocklist.fetch_state == "pending" and blocklist.fetch_requested > long_ago


def test_a_list_without_url_cannot_be_fetched(staff_web):
    blocklist = Blocklist.objects.create(name="by hand")
    response = staff_web.post(reverse("dnsengine-blocklist-fetch", args=[blocklist.pk]), follow=True)
    assert "has no URL to fetch from" in response.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("offline_lists")
def test_subscribe_by_url_fetches_now_and_a_running_engine_blocks_the_names(
    list_server, make_engine, engine_config, staff_user
):
    from django.test import Client as WebClient

    web = WebClient()
    web.force_login(staff_user)
    engine = make_engine(engine_config)
    dns = Client(engine.port)
    assert answers(dns.query("fresh.tracker.test")) == ["A 192.0.2.1"]
    url = list_server.serve("/trackers", "fresh.tracker.test\nother.tracker.test\n")

    page = subscribe(web, "trackers", url, follow=True)
    assert "its first download has started" in page.content.decode()
    blocklist = Blocklist.objects.get(name="trackers")
    status = wait_for_fetch(web, blocklist)

    assert status["state"] == "done", status
    assert "updated, 2 entries" in status["message"]
    assert set(BlockedDomain.objects.filter(blocklist=blocklist).values_list("domain", flat=True)) == {
        "fresh.tracker.test", "other.tracker.test"}  # fmt: skip
    engine_reload(engine)
    assert answers(dns.query("fresh.tracker.test")) == ["A 0.0.0.0"]
    assert BlocklistUpdate.objects.filter(blocklist=blocklist, status="updated", entries=2).count() == 1

    # A failing fetch now keeps the names and says why, on the page and in the history.
    list_server.routes["/trackers"].status = 404
    web.post(reverse("dnsengine-blocklist-fetch", args=[blocklist.pk]))
    status = wait_for_fetch(web, blocklist)
    assert status["state"] == "failed" and "404" in status["message"]
    assert "404" in status["last_error"]
    assert BlockedDomain.objects.filter(blocklist=blocklist).count() == 2
    html = web.get(reverse("dnsengine-blocklist", args=[blocklist.pk])).content.decode()
    assert "failed" in html and "404" in html
    assert [t.name for t in threading.enumerate() if t.name == "blocklist-fetch"] == []


# --- edit, delete, history --------------------------------------------------------------------


def test_staff_edit_a_subscription(staff_web):
    group = ClientGroup.objects.create(name="kids")
    blocklist = Blocklist.objects.create(name="ads", url="http://127.0.0.1:1/ads", etag='"v1"')
    url = reverse("dnsengine-blocklist", args=[blocklist.pk])
    response = staff_web.post(url, {"name": "ads2", "url": "http://127.0.0.1:1/ads2", "format": "hosts",
                                    "groups": [group.pk]})  # fmt: skip
    assert response.status_code == 302
    blocklist.refresh_from_db()
    assert (blocklist.name, blocklist.url, blocklist.format, blocklist.enabled) == (
        "ads2", "http://127.0.0.1:1/ads2", "hosts", False)  # fmt: skip
    assert list(blocklist.groups.all()) == [group]
    assert blocklist.etag == ""  # a new address: the old validators mean nothing there
    bad = staff_web.post(url, {"name": "ads2", "url": "gopher://x", "format": "auto"})
    assert bad.status_code == 400 and "only http:// and https://" in bad.content.decode()


def test_a_list_loaded_by_hand_is_renamed_without_an_address(staff_web):
    blocklist = Blocklist.objects.create(name="uploaded", source="upload:hosts.txt")
    response = staff_web.post(reverse("dnsengine-blocklist", args=[blocklist.pk]),
                              {"name": "my hosts", "url": "", "format": "auto", "enabled": "on"})  # fmt: skip
    assert response.status_code == 302
    blocklist.refresh_from_db()
    assert (blocklist.name, blocklist.url, blocklist.enabled) == ("my hosts", "", True)


def test_delete_asks_first_then_removes_the_list_and_its_names(staff_web):
    blocklist = Blocklist.objects.create(name="ads", url="http://127.0.0.1:1/ads", domain_count=1)
    BlockedDomain.objects.create(blocklist=blocklist, domain="ads.example.com")
    url = reverse("dnsengine-blocklist-delete", args=[blocklist.pk])
    confirm = staff_web.get(url)
    assert b'id="list-delete"' in confirm.content
    assert Blocklist.objects.filter(pk=blocklist.pk).exists()
    staff_web.post(url)
    assert not Blocklist.objects.filter(pk=blocklist.pk).exists()
    assert not BlockedDomain.objects.filter(domain="ads.example.com").exists()


def test_a_long_last_error_wraps_inside_its_card(viewer_web):
    Blocklist.objects.create(name="broken", last_error="x" * 400)
    html = viewer_web.get(URL).content.decode()
    assert 'class="error wrap"' in html


@pytest.mark.django_db
def test_the_update_history_keeps_the_last_few_per_list(list_server, settings):
    settings.GLORYHOLE_BLOCKLIST_UPDATE_HOURS = 24
    blocklist = Blocklist.objects.create(name="ads", url=list_server.serve("/ads", "ads.example.com\n"))
    other = Blocklist.objects.create(name="other", url=list_server.serve("/other", "o.example.com\n"))
    blocklist_update(other, force=True)
    for _ in range(HISTORY_KEEP + 5):
        blocklist_update(Blocklist.objects.get(pk=blocklist.pk), force=True)
    assert BlocklistUpdate.objects.filter(blocklist=blocklist).count() == HISTORY_KEEP
    assert BlocklistUpdate.objects.filter(blocklist=other).count() == 1  # another list's history is its own
    newest = BlocklistUpdate.objects.filter(blocklist=blocklist).first()
    assert newest.status == "unchanged" or newest.entries == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("offline_lists")
def test_a_running_fetch_now_keeps_the_engines_updater_off_its_list(monkeypatch, staff_user):
    from dnsengine.runtime.updater import blocklists_due
    from dnsengine.services import blocklists as service

    Blocklist.objects.filter(url="").delete()
    blocklist = Blocklist.objects.create(name="ads", url="http://127.0.0.1:1/ads")
    assert blocklists_due()
    seen = []

    def update(b, force):
        seen.append(blocklists_due())  # what an engine's updater would find while the fetch runs
        return _outcome(b)

    monkeypatch.setattr(service, "blocklist_update", update)
    assert service.blocklist_fetch_request(user=staff_user, blocklist=blocklist)
    # The request started the thread on commit (autocommit here); wait for it like the page does.
    end = time.monotonic() + 10
    while Blocklist.objects.get(pk=blocklist.pk).fetch_state in ("pending", "running") and time.monotonic() < end:
        time.sleep(0.05)
    assert seen == [False]
    assert Blocklist.objects.get(pk=blocklist.pk).fetch_state == "done"


def _outcome(blocklist):
    from dnsengine.blocklists.importer import UNCHANGED, UpdateOutcome

    return UpdateOutcome(blocklist.name, UNCHANGED, 0, "HTTP 304 not modified")
