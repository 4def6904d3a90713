"""The web UI in a real browser: Debian's chromium, headless, driven by Playwright.

One person's path: log in, search the history for a blocked query, press
"Allow this domain", and see the running engine answer that name normally; then
watch the status page's fill bar follow the EngineStatus row without a reload;
then a walk through the admin; then the clients and groups pages, with a client
renamed and moved in one click. Screenshots of the dashboard, the status page and
the clients and groups pages (the clients page also at a phone's width) go to
artifacts/ for review; so does every page at 390 and 1366 px, from a test that fails a
page wider than its window, with JavaScript and without.

Every page is served with a Content-Security-Policy that forbids inline scripts and
styles; a violation on any page a test visits fails that test (`page` fixture). Nothing
leaves the box but DNS: every request a page makes must go to the server's own origin,
and one that does not is aborted, recorded, and fails the test (`page` fixture too).

`make test` installs chromium (apt); Playwright never downloads a browser here.
"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone

from dnsengine.models import (
    AllowedDomain,
    BlockedDomain,
    Blocklist,
    Client,
    ClientGroup,
    EngineStatus,
    ForwardingRule,
    GroupSchedule,
)
from gloryhole_site.testing.factories import make_query
from gloryhole_site.testing.fake_upstream import Behaviour, FakeUpstream
from querylog.models import ClientRollup, DomainRollup, QueryRollup

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(django_settings.BASE_DIR) / "artifacts"
BLOCKED = "ads.tracker.example"
UPSTREAM_ADDRESS = "192.0.2.1"  # what the fake upstream answers for every A query
PASSWORD = "browser-pass-123"


# Runs in every document before its own scripts; the binding reaches Python at once, so a
# violation is recorded even when the page navigates away right after.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.reportCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${where}`);
});
"""


@pytest.fixture
def csp_violations() -> list[str]:
    return []


def assert_no_csp_violations(violations: list[str]) -> None:
    assert not violations, "Content-Security-Policy violations:\n" + "\n".join(violations)


@pytest.fixture
def offsite_requests() -> list[str]:
    return []


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def assert_same_origin(requests: list[str], offsite: list[str]) -> None:
    """Every request went to the origin of the first one (the test's first page)."""
    assert not offsite, "requests to another origin:\n" + "\n".join(offsite)
    if requests:
        home = origin_of(requests[0])
        others = [url for url in requests if origin_of(url) != home and not url.startswith(("data:", "about:"))]
        assert not others, f"requests that left {home}:\n" + "\n".join(others)


@pytest.fixture
def page(monkeypatch, csp_violations, offsite_requests):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("chromium is not installed: run `make test`, which installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the
    # test makes between browser steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # Reduced motion: the fill bar jumps instead of animating, so a screenshot shows its value.
        context = browser.new_context(viewport={"width": 1400, "height": 900}, reduced_motion="reduce")
        context.set_default_timeout(10_000)
        context.expose_binding(
            "reportCspViolation", lambda source, text: csp_violations.append(f"{source['frame'].url}: {text}")
        )
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        # Every request of every page and frame, seen before it is sent: the first one's
        # origin is the server's; a request anywhere else is aborted and recorded.
        requests: list[str] = []

        def only_home(route) -> None:
            url = route.request.url
            requests.append(url)
            if url.startswith(("data:", "about:", "blob:")) or origin_of(url) == origin_of(requests[0]):
                route.continue_()
            else:
                offsite_requests.append(url)
                route.abort()

        context.route("**/*", only_home)
        page = context.new_page()
        # Chromium also reports each violation on the console ("Refused to apply inline style ...").
        page.on(
            "console",
            lambda msg: (
                csp_violations.append(f"{page.url}: console: {msg.text}")
                if "Content Security Policy" in msg.text
                else None
            ),
        )
        yield page
        # With the loop running, Django keeps this thread's connections apart from the
        # plain thread-local ones (asgiref's thread-critical Local): close them here, or
        # an idle PostgreSQL session outlives the test and blocks DROP DATABASE at the end.
        connections.close_all()
        context.close()
        browser.close()
    # Also here, for a test that ended before its own check.
    assert_no_csp_violations(csp_violations)
    assert_same_origin(requests, offsite_requests)


def seed_rollups(now) -> None:
    """A day of plausible dashboard data, so the screenshot shows a real chart."""
    minutes, domains, clients = [], {}, {}
    for i in range(0, 24 * 60, 5):
        bucket = (now - timedelta(minutes=i)).replace(second=0, microsecond=0)
        wave = 40 + (i // 60 % 12) * 6
        for status, count in (("forwarded", wave), ("cached", wave // 2), ("blocked", wave // 4)):
            minutes.append(QueryRollup(bucket=bucket, status=status, count=count))
            hour = bucket.replace(minute=0)
            domain = BLOCKED if status == "blocked" else "www.example.com"
            domains[(hour, domain, status)] = domains.get((hour, domain, status), 0) + count
            client = "192.0.2.10" if i % 2 else "192.0.2.11"
            clients[(hour, client)] = clients.get((hour, client), 0) + count
    QueryRollup.objects.bulk_create(minutes)
    DomainRollup.objects.bulk_create(
        DomainRollup(bucket=h, domain=d, status=s, count=c) for (h, d, s), c in domains.items()
    )
    ClientRollup.objects.bulk_create(ClientRollup(bucket=h, client=c, count=n) for (h, c), n in clients.items())


def a_records(dns_client, name: str) -> list[str]:
    reply = dns_client.query(name, "A")
    return [rdata.address for rrset in reply.answer for rdata in rrset]


def wait_for(predicate, timeout: float = 5.0):
    """Poll something another process or thread changes (the engine reloads on its own timer)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def login(page, base: str, path: str) -> None:
    page.goto(base + path)
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{path}*")


def test_a_person_allows_a_blocked_domain_and_the_engine_answers_it(
    page, csp_violations, live_server, dns_client, engine
):
    get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    blocklist = Blocklist.objects.create(name="ads-list", domain_count=1)
    BlockedDomain.objects.create(blocklist=blocklist, domain=BLOCKED)  # bumps the config generation
    now = timezone.now()
    make_query("www.example.com", when=now - timedelta(seconds=5))
    make_query(BLOCKED, status="blocked", rule="list:ads-list", rcode="NOERROR", when=now - timedelta(seconds=3))
    make_query("cdn.example.net", status="cached", when=now - timedelta(seconds=1))
    seed_rollups(now)
    # The engine reloads on its own timer: wait until it blocks the name.
    assert wait_for(lambda: UPSTREAM_ADDRESS not in a_records(dns_client, BLOCKED)), "the engine never blocked it"

    base = live_server.url
    login(page, base, "/queries/")

    # A history search, as a person types it; the filters end up in the URL.
    page.fill("#id_domain", "*.tracker.example")
    page.select_option("#id_status", "blocked")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/queries/?*status=blocked*")
    rows = page.locator("table.queries tbody tr")
    assert rows.count() == 1
    row = rows.first
    assert BLOCKED in row.inner_text()
    assert "list:ads-list" in row.inner_text()

    row.get_by_role("button", name="Allow this domain").click()
    page.wait_for_load_state()
    assert "status=blocked" in page.url  # back on the same search
    assert f"{BLOCKED} is allowed" in page.locator(".messages").inner_text()
    assert AllowedDomain.objects.filter(domain=BLOCKED, enabled=True).exists()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "history.png"), full_page=True)

    # The engine picks the change up from the database and answers normally.
    assert wait_for(lambda: a_records(dns_client, BLOCKED) == [UPSTREAM_ADDRESS]), "still blocked after allowing"

    page.goto(base + "/?window=24h")
    assert page.locator("svg.chart rect.s-blocked").count() > 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.goto(base + "/blocklists/?test=" + BLOCKED)
    assert page.locator("#check-result").count() == 1
    assert_no_csp_violations(csp_violations)


def test_the_status_page_fill_bar_follows_the_engine_row(page, csp_violations, live_server, transactional_db):
    get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    now = timezone.now()
    status = EngineStatus.objects.create(
        name="127.0.0.1:5300",
        hostname="localhost",
        pid=4242,
        started_at=now - timedelta(minutes=10),
        heartbeat_at=now,
        qps=120.0,
        buffer_size=100,
        buffer_capacity=1000,
        written=50_000,
        write_rate=118.0,
        workers=2,
        mode="pool",
    )
    base = live_server.url
    login(page, base, "/status/")
    bar = page.locator('[data-engine="127.0.0.1:5300"] [data-field="bar"]')
    assert bar.evaluate("(meter) => meter.value") == 10.0

    # The engine's next heartbeat: a fuller buffer and some drops.
    EngineStatus.objects.filter(pk=status.pk).update(
        buffer_size=800, drops=25, heartbeat_at=timezone.now(), written=50_200
    )
    page.wait_for_function("() => document.querySelector('[data-field=\"bar\"]').value === 80", timeout=10_000)
    # Past the meter's `high` (90 is the red zone's start, 50 the amber's): amber.
    assert bar.evaluate("(meter) => meter.value >= meter.low && meter.value <= meter.high")
    assert page.locator('[data-field="drops"]').inner_text() == "25"
    assert page.locator('[data-field="state"]').inner_text() == "up"
    assert float(page.locator('[data-field="drop_rate"]').inner_text()) > 0  # 25 drops since the page loaded
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status.png"), full_page=True)

    # Silent for longer than ten seconds: shown as down on the next refresh.
    EngineStatus.objects.filter(pk=status.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=30))
    page.wait_for_function(
        "() => document.querySelector('[data-field=\"state\"]').textContent === 'down'", timeout=10_000
    )
    assert_no_csp_violations(csp_violations)


def test_the_admin_works_under_the_content_security_policy(page, csp_violations, live_server, transactional_db):
    """Django's admin pages, scripts included (filters, actions, the date widgets), load with no violation."""
    get_user_model().objects.create_superuser("staff", password=PASSWORD)
    blocklist = Blocklist.objects.create(name="ads-list", domain_count=1)
    BlockedDomain.objects.create(blocklist=blocklist, domain=BLOCKED)
    base = live_server.url
    page.goto(base + "/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(base + "/admin/")
    for path in (
        "/admin/",
        "/admin/dnsengine/blocklist/",
        f"/admin/dnsengine/blocklist/{blocklist.pk}/change/",
        "/admin/dnsengine/blockeddomain/",
        "/admin/dnsengine/blockeddomain/add/",
        "/admin/dnsengine/alloweddomain/add/",
        "/admin/dnsengine/localrecord/add/",
        "/admin/axes/accessattempt/",
        "/admin/axes/accessfailurelog/",
        "/admin/auth/user/",
    ):
        response = page.goto(base + path)
        assert response.status == 200, path
        assert "default-src 'self'" in response.headers["content-security-policy"], path
    # The changelist's select-all box is wired up by admin/js/actions.js: scripts do run.
    page.goto(base + "/admin/dnsengine/blocklist/")
    page.check("#action-toggle")
    assert page.locator("input.action-select").first.is_checked()
    # The date widget's calendar (admin/js/calendar.js builds it, shows it by CSSOM).
    page.goto(base + f"/admin/dnsengine/blocklist/{blocklist.pk}/change/")
    page.locator(".datetimeshortcuts a", has_text="Today").first.click()
    page.locator(".datetimeshortcuts a.date-icon, .datetimeshortcuts a[id^=calendarlink]").first.click()
    assert page.locator(".calendarbox").first.is_visible()
    assert_no_csp_violations(csp_violations)


def seed_clients(now) -> ClientGroup:
    """A few clients of the last day, two named, one rate-limited, in two groups; returns the second group."""
    # A transactional test before this one flushed the row migration 0005 created.
    ClientGroup.objects.get_or_create(is_default=True, defaults={"name": "Default"})
    kids = ClientGroup.objects.create(name="Kids", description="the children's tablets", upstreams="192.0.2.53")
    social = Blocklist.objects.create(name="social-media", domain_count=1200)
    social.groups.set([kids])
    Blocklist.objects.create(name="ads-list", domain_count=85_000)  # no groups: every group
    GroupSchedule.objects.create(group=kids, blocklist=social, weekdays=0b0011111, start="21:00", end="07:00")
    Client.objects.create(name="Anna's tablet", ip="192.168.1.37", group=kids)
    Client.objects.create(name="Work laptop", mac="aa:bb:cc:dd:ee:ff")
    hour = now.replace(minute=0, second=0, microsecond=0)
    for client, queries, blocked in (
        ("192.168.1.37", 4200, 1350),
        ("192.168.1.20", 2900, 310),
        ("192.168.1.1", 1800, 40),
        ("fd00::17", 650, 90),
    ):
        ClientRollup.objects.create(bucket=hour, client=client, count=queries, blocked=blocked)
    EngineStatus.objects.create(
        name="127.0.0.1:5300", hostname="localhost", pid=1, started_at=now, heartbeat_at=now,
        rate_limited=["192.168.1.20"],
    )  # fmt: skip
    return kids


def test_the_clients_and_groups_pages(page, csp_violations, live_server, transactional_db):
    get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    kids = seed_clients(timezone.now())
    base = live_server.url
    login(page, base, "/clients/")
    rows = page.locator("table.clients tbody tr")
    assert rows.count() == 5
    assert "rate-limited" in page.locator('tr[data-client="192.168.1.20"]').inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "clients.png"), full_page=True)

    # Rename and move in one click.
    row = page.locator('tr[data-client="192.168.1.20"]')
    row.locator("input[name=name]").fill("Living-room TV")
    row.locator("select[name=group]").select_option(label="Kids")
    row.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert "Living-room TV" in page.locator(".messages").inner_text()
    assert Client.objects.get(ip="192.168.1.20").group == kids

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.screenshot(path=str(ARTIFACTS / "clients-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})

    page.goto(base + "/groups/")
    assert page.locator("table.groups tbody tr").count() == 2
    page.screenshot(path=str(ARTIFACTS / "groups.png"), full_page=True)
    page.goto(base + f"/groups/{kids.pk}/")
    assert page.locator("ul.checklist input[type=checkbox]").count() >= 2
    page.screenshot(path=str(ARTIFACTS / "group.png"), full_page=True)
    assert_no_csp_violations(csp_violations)


def test_the_forwarding_page_adds_a_rule_and_fits_a_phone(page, csp_violations, live_server, transactional_db):
    get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    ForwardingRule.objects.create(domain="corp.example.com", upstreams="10.8.0.1:53, 10.8.0.2:53", comment="VPN")
    base = live_server.url
    login(page, base, "/forwarding/")
    form = page.locator("form.stack")
    form.locator("input[name=domain]").fill("168.192.in-addr.arpa")
    form.locator("input[name=upstreams]").fill("192.168.1.1")
    form.get_by_role("button", name="Add").click()
    page.wait_for_load_state()
    assert "now go to 192.168.1.1:53" in page.locator(".messages").inner_text()
    assert page.locator("table.forwarding tbody tr").count() == 2

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    # The page does not scroll sideways: the table scrolls inside its card.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate(
        "(() => { const s = document.querySelector('.scroll'); return s.scrollWidth > s.clientWidth })()"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "forwarding-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    assert_no_csp_violations(csp_violations)


def test_every_page_loads_only_from_its_own_origin(
    page, csp_violations, offsite_requests, live_server, transactional_db
):
    """No CDN, font or analytics request from any page; privacy settings and forget look right."""
    get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    seed_clients(timezone.now())
    make_query("www.example.com", client="192.168.1.20")
    base = live_server.url
    login(page, base, "/")
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    for path in ("/", "/queries/", "/clients/", "/groups/", "/blocklists/", "/status/", "/settings/privacy/",
                 "/forwarding/", "/local-dns/", "/domains/",
                 "/clients/forget/?client=192.168.1.20", "/admin/"):  # fmt: skip
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
    assert any(url.endswith(".css") for url in seen)  # the recording sees subresources, not only pages
    assert all(origin_of(url) == base for url in seen), [url for url in seen if origin_of(url) != base]
    assert not offsite_requests

    page.goto(base + "/settings/privacy/")
    page.select_option("#id_level", "1")
    page.fill("#id_dont_log_domains", "*.bank.example")
    page.click("#privacy-form button[type=submit]")
    page.wait_for_load_state()
    assert "Privacy settings saved" in page.locator(".messages").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "privacy.png"), full_page=True)
    page.goto(base + "/queries/")
    assert "Privacy level 1" in page.locator("#privacy-notice").inner_text()
    page.goto(base + "/clients/forget/?client=192.168.1.20")
    page.screenshot(path=str(ARTIFACTS / "forget.png"), full_page=True)
    page.get_by_role("button", name="Forget 192.168.1.20").click()
    page.wait_for_load_state()
    assert "Forgot 192.168.1.20" in page.locator(".messages").inner_text()
    assert_no_csp_violations(csp_violations)


def assert_no_horizontal_overflow(page, what: str) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{what} is {width[0]} px wide in a {width[1]} px window"


def screenshots_at_both_widths(page, name: str) -> None:
    """artifacts/NAME-390.png and NAME-1366.png, each without a horizontal page overflow."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((390, 844), (1366, 900)):
        page.set_viewport_size({"width": width, "height": height})
        page.reload()
        assert_no_horizontal_overflow(page, f"{page.url} at {width} px")
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)


def test_the_domains_and_blocklists_pages(page, csp_violations, live_server, transactional_db):
    """Add and undo an allow entry; subscribe to a list served on loopback and watch its fetch finish."""
    from gloryhole_site.testing.list_server import ListServer

    get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    ClientGroup.objects.get_or_create(is_default=True, defaults={"name": "Default"})
    Blocklist.objects.exclude(url="").delete()  # migration 0003's subscriptions point at the internet
    Blocklist.objects.create(
        name="broken", url="https://lists.example.invalid/" + "very-long-path/" * 12,
        last_error="https://lists.example.invalid/" + "x" * 300 + ": HTTP 404",
    )  # fmt: skip
    for i in range(8):
        AllowedDomain.objects.create(domain=f"service-{i}.a-rather-long-subdomain.example.com", comment="seeded")
    base = live_server.url
    login(page, base, "/domains/")

    form = page.locator("#entry-add")
    form.locator("select[name=action]").select_option("allow")
    form.locator("select[name=kind]").select_option("exact")
    form.locator("input[name=value]").fill("bank.example.com")
    form.locator("input[name=comment]").fill("online banking")
    form.get_by_role("button", name="Add").click()
    page.wait_for_url("**/domains/?*focus=*")
    entry = AllowedDomain.objects.get(domain="bank.example.com")
    row = page.locator(f"#entry-allow-{entry.pk}")
    assert "online banking" in row.inner_text()
    screenshots_at_both_widths(page, "domains")
    row.get_by_role("button", name="Undo").click()
    page.wait_for_load_state()
    assert "Undone" in page.locator(".messages").inner_text()
    assert not AllowedDomain.objects.filter(domain="bank.example.com").exists()

    server = ListServer().start()
    try:
        url = server.serve("/trackers.txt", "fresh.tracker.test\nother.tracker.test\nthird.tracker.test\n")
        page.goto(base + "/blocklists/")
        form = page.locator("#subscribe")
        form.locator("input[name=name]").fill("trackers")
        form.locator("input[name=url]").fill(url)
        form.get_by_role("button", name="Subscribe").click()
        # The page's script polls the fetch and reloads when it is done (the names are
        # stored a moment before the fetch is marked done: wait for both).
        page.wait_for_function(
            '() => document.querySelector(\'tr[data-list="trackers"] [data-field="domain_count"]\')'
            "?.textContent.trim() === '3'"
            " && document.querySelector('tr.fetch-row')?.textContent.includes('fetch done')",
            timeout=15_000,
        )
        assert "fetch done" in page.locator("tr.fetch-row").first.inner_text()
    finally:
        server.stop()
    assert BlockedDomain.objects.filter(blocklist__name="trackers").count() == 3
    screenshots_at_both_widths(page, "blocklists")
    page.goto(base + f"/blocklists/{Blocklist.objects.get(name='trackers').pk}/")
    assert "updated" in page.locator("table.updates").inner_text()
    screenshots_at_both_widths(page, "blocklist")
    assert_no_csp_violations(csp_violations)


def test_a_person_changes_the_upstreams_in_settings_and_the_running_engine_uses_them(
    page, csp_violations, live_server, dns_client, engine
):
    get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    with FakeUpstream("127.0.0.1", 0, Behaviour(address="198.51.100.7")) as second:
        assert a_records(dns_client, "before.example") == [UPSTREAM_ADDRESS]
        base = live_server.url
        login(page, base, "/settings/")
        page.fill("#id_GLORYHOLE_UPSTREAMS", second.address)
        page.click("#settings-form button[type=submit]")
        page.wait_for_load_state()
        assert "Saved GLORYHOLE_UPSTREAMS" in page.locator(".messages").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "settings.png"), full_page=True)

        # The engine's watcher (every 0.1 s here) applies it; no reload is forced.
        def uses_second() -> bool:
            return a_records(dns_client, f"q{time.monotonic_ns()}.example") == ["198.51.100.7"]

        assert wait_for(uses_second), "the running engine never used the new upstream"
    assert_no_csp_violations(csp_violations)


def seed_every_page(now) -> ClientGroup:
    """Enough rows that every page has its tables filled, long values included."""
    from dnsengine.models import LocalRecord
    from dnsengine.services.pause import blocking_pause
    from querylog.models import AnswerRollup

    kids = seed_clients(now)
    seed_rollups(now)
    hour = now.replace(minute=0, second=0, microsecond=0)
    for qtype, upstream, bucket, count in (
        ("A", "192.0.2.53:53", 30, 900),
        ("A", "192.0.2.53:53", 34, 120),
        ("AAAA", "tls://dns.example.net:853", 32, 400),
        ("HTTPS", "", 0, 700),
        ("PTR", "", 0, 60),
    ):
        AnswerRollup.objects.create(bucket=hour, qtype=qtype, upstream=upstream, time_bucket=bucket, count=count)
    Blocklist.objects.exclude(url="").delete()  # migration 0003's subscriptions point at the internet
    Blocklist.objects.create(
        name="broken", url="https://lists.example.invalid/" + "very-long-path/" * 12,
        last_error="https://lists.example.invalid/" + "x" * 300 + ": HTTP 404",
    )  # fmt: skip
    AllowedDomain.objects.create(domain="service.a-rather-long-subdomain.example.com", comment="seeded")
    ForwardingRule.objects.create(domain="corp.example.com", upstreams="10.8.0.1:53, 10.8.0.2:53", comment="VPN")
    LocalRecord.objects.create(name="nas.lan", type="A", value="192.168.1.5")
    spf = '"v=spf1 ' + "include:_spf.example.com " * 6 + '-all"'
    LocalRecord.objects.create(name="mail.lan", type="TXT", value=spf)
    blocking_pause(60, by="staff")
    return kids


def page_paths(kids: ClientGroup, blocklist: Blocklist) -> dict[str, str]:
    """Every page of the web UI, by screenshot name; /settings/ once that page exists."""
    from django.urls import Resolver404, resolve

    paths = {
        "dashboard": "/", "queries": "/queries/", "clients": "/clients/", "groups": "/groups/",
        "group": f"/groups/{kids.pk}/", "blocklists": "/blocklists/", "blocklist": f"/blocklists/{blocklist.pk}/",
        "domains": "/domains/", "forwarding": "/forwarding/", "local-dns": "/local-dns/", "status": "/status/",
        "privacy": "/settings/privacy/",
    }  # fmt: skip
    try:
        resolve("/settings/")
        paths["settings"] = "/settings/"
    except Resolver404:
        pass
    return paths


# The innermost elements whose right edge is past the window: what makes a page too wide.
WIDEST_ELEMENTS = """() => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5
    && ![...e.children].some((c) => c.getBoundingClientRect().right > window.innerWidth + 0.5))
  .slice(0, 5)
  .map((e) => `${e.tagName.toLowerCase()}.${e.className} ${Math.round(e.getBoundingClientRect().right)}px`)"""


def test_every_page_fits_a_phone_and_a_laptop(page, csp_violations, live_server, transactional_db):
    """Each page at 390 and 1366 px: no sideways scrolling of the page, screenshots in artifacts/.

    Then the scripts' part (the countdown, the folded menu) and the same pages without JavaScript.
    """
    get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    kids = seed_every_page(timezone.now())
    make_query(BLOCKED, client="192.168.1.37", status="blocked")
    make_query("www.example.com", client="192.168.1.20")
    base = live_server.url
    page.goto(base + "/accounts/login/")
    screenshots_at_both_widths(page, "login")
    login(page, base, "/")
    too_wide: list[str] = []  # every page that fails, not only the first
    paths = page_paths(kids, Blocklist.objects.get(name="broken"))
    for name, path in paths.items():
        page.goto(base + path)
        try:
            screenshots_at_both_widths(page, name)
        except AssertionError as exc:
            too_wide.append(f"{exc}; sticking out: {page.evaluate(WIDEST_ELEMENTS)}")
    assert not too_wide, "\n".join(too_wide)

    # The dashboard's pause countdown: the page says the time left, the script counts it down.
    page.goto(base + "/")
    countdown = page.locator("#blocking-pause [data-until]")
    assert "left" in countdown.inner_text()
    first = countdown.inner_text()
    page.wait_for_function(
        "(first) => document.querySelector('#blocking-pause [data-until]').textContent !== first", arg=first
    )
    # At a phone's width the script folds the navigation behind a menu button.
    page.set_viewport_size({"width": 390, "height": 844})
    nav = page.locator(".topbar nav")
    assert not nav.is_visible()
    page.get_by_role("button", name="Menu").click()
    assert nav.is_visible()
    nav.get_by_role("link", name="Queries").click()
    page.wait_for_url(base + "/queries/*")
    assert_no_csp_violations(csp_violations)

    # Without JavaScript, same session: every page still fits, the links wrap instead of
    # folding, the pause says its time left, and a form (resume blocking) posts and redirects.
    bare_context = page.context.browser.new_context(
        java_script_enabled=False, viewport={"width": 390, "height": 844}, storage_state=page.context.storage_state()
    )
    try:
        bare = bare_context.new_page()
        for path in paths.values():
            bare.goto(base + path)
            assert_no_horizontal_overflow(bare, f"{path} without JavaScript")
            assert bare.locator(".topbar nav").is_visible(), path
            assert not bare.get_by_role("button", name="Menu").is_visible(), path
        bare.goto(base + "/")
        assert "minutes left" in bare.locator("#blocking-pause .countdown").inner_text()
        bare.screenshot(path=str(ARTIFACTS / "dashboard-390-nojs.png"), full_page=True)
        bare.get_by_role("button", name="Resume blocking").click()
        bare.wait_for_load_state()
        assert "Blocking is on." in bare.locator("#blocking-pause").inner_text()
    finally:
        bare_context.close()
