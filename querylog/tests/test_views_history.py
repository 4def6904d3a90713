from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from dnsengine.core.wire import name_to_text
from gloryhole_site.testing.factories import make_query
from querylog.history import cursor_decode, cursor_encode

URL = reverse("querylog-history")


def domains_of(response) -> list[str]:
    return [row["domain"] for row in response.context["page"].rows]


@pytest.mark.django_db
def test_it_redirects_anonymous_users_to_login(web):
    response = web.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_lists_newest_first(viewer_web):
    now = timezone.now()
    make_query("old.example.com", when=now - timedelta(minutes=5))
    make_query("new.example.com", when=now)
    response = viewer_web.get(URL)
    assert response.status_code == 200
    assert domains_of(response) == ["new.example.com", "old.example.com"]


def test_it_shows_why_a_query_was_blocked(viewer_web):
    make_query("ads.example.com", status="blocked", rule="list:StevenBlack")
    response = viewer_web.get(URL)
    assert b"list:StevenBlack" in response.content


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"client": "192.0.2.99"}, ["c.example.com"]),
        ({"client": "2001:db8:0:0::1"}, ["v6.example.com"]),
        ({"domain": "a.example.com"}, ["a.example.com"]),
        ({"domain": "A.Example.COM."}, ["a.example.com"]),
        ({"domain": "*.example.org"}, ["deep.x.example.org", "example.org"]),
        ({"domain": "*ample.o*"}, ["deep.x.example.org", "example.org"]),
        ({"status": "blocked"}, ["b.example.com"]),
        ({"qtype": "aaaa"}, ["v6.example.com"]),
        ({"rcode": "NXDOMAIN"}, ["nx.example.com"]),
        (
            {"last": "1h"},
            [
                "deep.x.example.org",
                "example.org",
                "nx.example.com",
                "v6.example.com",
                "c.example.com",
                "b.example.com",
                "a.example.com",
            ],
        ),
    ],
)
def test_each_filter_narrows_the_search(viewer_web, params, expected):
    now = timezone.now()
    make_query("ancient.example.com", when=now - timedelta(days=3))
    make_query("a.example.com", when=now - timedelta(seconds=70))
    make_query("b.example.com", status="blocked", when=now - timedelta(seconds=60))
    make_query("c.example.com", client="192.0.2.99", when=now - timedelta(seconds=50))
    make_query("v6.example.com", client="2001:db8::1", qtype="AAAA", when=now - timedelta(seconds=40))
    make_query("nx.example.com", rcode="NXDOMAIN", when=now - timedelta(seconds=30))
    make_query("example.org", when=now - timedelta(seconds=20))
    make_query("deep.x.example.org", when=now - timedelta(seconds=10))
    make_query("notexample.org", when=now - timedelta(days=2))
    response = viewer_web.get(URL, params)
    assert response.status_code == 200, response.context["form"].errors
    assert domains_of(response) == expected


def test_the_time_range_is_inclusive_and_explicit(viewer_web):
    base = timezone.now().replace(microsecond=0) - timedelta(hours=2)
    make_query("before.example.com", when=base - timedelta(minutes=1))
    make_query("inside.example.com", when=base + timedelta(minutes=1))
    make_query("after.example.com", when=base + timedelta(minutes=11))
    start = timezone.localtime(base).strftime("%Y-%m-%dT%H:%M:%S")
    end = timezone.localtime(base + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")
    response = viewer_web.get(URL, {"start": start, "end": end})
    assert domains_of(response) == ["inside.example.com"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"client": "300.1.2.3"}, "client"),
        ({"client": "not-an-ip"}, "client"),
        ({"status": "pwned"}, "status"),
        ({"rcode": "WHATEVER"}, "rcode"),
        ({"qtype": "A; DROP TABLE"}, "qtype"),
        ({"limit": "1000000"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "lots"}, "limit"),
        ({"start": "yesterday-ish"}, "start"),
        ({"domain": "bad..name"}, "domain"),
        ({"domain": "*a\u00e9b*"}, "domain"),  # the log holds ASCII only
        ({"domain": "ads*.example.com"}, "domain"),
        ({"before": "garbage"}, "before"),
        ({"before": "99999999999999999999-1"}, "before"),
        ({"last": "5y"}, "last"),
    ],
)
def test_bad_input_is_a_form_error_not_a_500(viewer_web, params, field):
    response = viewer_web.get(URL, params)
    assert response.status_code == 200
    form = response.context["form"]
    assert field in form.errors
    assert response.context["page"] is None
    assert b'class="error"' in response.content


def test_a_reversed_time_range_is_a_form_error(viewer_web):
    response = viewer_web.get(URL, {"start": "2024-05-02T10:00", "end": "2024-05-01T10:00"})
    assert response.status_code == 200
    assert "after its end" in str(response.context["form"].non_field_errors())
    assert response.context["page"] is None


def test_a_preset_and_a_start_time_together_are_a_form_error(viewer_web):
    response = viewer_web.get(URL, {"last": "1h", "start": "2024-05-01T10:00"})
    assert response.context["form"].non_field_errors()


def test_a_substring_search_is_bounded_to_a_day(viewer_web):
    now = timezone.now()
    make_query("ads.recent.example", when=now - timedelta(hours=1))
    make_query("ads.older.example", when=now - timedelta(hours=30))
    response = viewer_web.get(URL, {"domain": "*ads*"})
    assert domains_of(response) == ["ads.recent.example"]
    assert b"last 24 hours only" in response.content
    too_wide = viewer_web.get(URL, {"domain": "*ads*", "last": "7d"})
    assert "domain" in too_wide.context["form"].errors


def test_a_suffix_search_is_bounded_to_a_day_and_an_exact_one_is_not(viewer_web):
    now = timezone.now()
    make_query("a.rare.example", when=now - timedelta(hours=1))
    make_query("b.rare.example", when=now - timedelta(hours=30))
    assert domains_of(viewer_web.get(URL, {"domain": "*.rare.example"})) == ["a.rare.example"]
    assert "domain" in viewer_web.get(URL, {"domain": "*.rare.example", "last": "7d"}).context["form"].errors
    assert domains_of(viewer_web.get(URL, {"domain": "b.rare.example"})) == ["b.rare.example"]


def test_keyset_pages_cover_every_row_once_even_with_equal_timestamps(viewer_web):
    same = timezone.now() - timedelta(minutes=1)
    for i in range(7):
        make_query(f"d{i}.example.com", when=same)
    for i in range(7, 12):
        make_query(f"d{i}.example.com", when=same - timedelta(seconds=i))
    seen: list[str] = []
    params = {"limit": "5", "status": "forwarded"}
    pages = 0
    while True:
        response = viewer_web.get(URL, params)
        page = response.context["page"]
        seen += [r["domain"] for r in page.rows]
        pages += 1
        if not page.next_cursor:
            break
        # The next link carries the filters along with the cursor.
        assert f"before={page.next_cursor}" in response.content.decode()
        assert "status=forwarded" in response.content.decode()
        params = {**params, "before": page.next_cursor}
    assert pages == 3
    assert sorted(seen) == sorted(f"d{i}.example.com" for i in range(12))
    assert len(seen) == len(set(seen))


def test_the_cursor_round_trips_to_the_microsecond():
    moment = timezone.now().replace(microsecond=123457)
    assert cursor_decode(cursor_encode(moment, 42)) == (moment, 42)


def test_filters_survive_in_the_url_for_bookmarks(viewer_web):
    make_query("ads.example.com", status="blocked", client="192.0.2.7")
    response = viewer_web.get(URL, {"client": "192.0.2.7", "status": "blocked"})
    form = response.context["form"]
    assert form.data["client"] == "192.0.2.7"
    html = response.content.decode()
    assert 'value="192.0.2.7"' in html
    assert 'value="blocked" selected' in html


def test_staff_see_allow_on_blocked_rows_and_block_on_others(staff_web):
    make_query("ads.example.com", status="blocked", rule="list:x")
    make_query("fine.example.com", status="forwarded")
    html = staff_web.get(URL).content.decode()
    assert html.count("Allow this domain") == 1
    assert html.count("Block this domain") == 1
    assert html.count("csrfmiddlewaretoken") >= 3  # each action form and the logout form


def test_viewers_get_no_change_buttons(viewer_web):
    make_query("ads.example.com", status="blocked")
    html = viewer_web.get(URL).content.decode()
    assert "Allow this domain" not in html


def test_csv_export_streams_the_current_filter(viewer_web):
    make_query("ads.example.com", status="blocked", rule="list:x")
    make_query("fine.example.com")
    response = viewer_web.get(reverse("querylog-export"), {"status": "blocked"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["domain"] for r in rows] == ["ads.example.com"]
    assert rows[0]["rule"] == "list:x"


def test_csv_export_is_bounded(viewer_web, settings):
    settings.GLORYHOLE_EXPORT_MAX_ROWS = 3
    for i in range(5):
        make_query(f"d{i}.example.com")
    response = viewer_web.get(reverse("querylog-export"))
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert len(lines) == 1 + 3


def test_csv_export_neutralises_spreadsheet_formulas(viewer_web):
    make_query("x.example.com", rule="=HYPERLINK(1)")
    body = b"".join(viewer_web.get(reverse("querylog-export")).streaming_content).decode()
    assert "'=HYPERLINK(1)" in body


def test_csv_export_rejects_a_bad_filter(viewer_web):
    response = viewer_web.get(reverse("querylog-export"), {"client": "nope"})
    assert response.status_code == 400
    assert b"client" in response.content


def test_row_links_narrow_the_search_and_keep_the_other_filters(viewer_web):
    make_query("ads.example.com", status="blocked", client="192.0.2.7")
    cursor = cursor_encode(timezone.now() + timedelta(days=1), 10**9)
    html = viewer_web.get(URL, {"status": "blocked", "limit": "5", "before": cursor}).content.decode()
    # Narrowing starts a new search: the cursor of the current page is dropped.
    assert 'href="?status=blocked&amp;limit=5&amp;client=192.0.2.7"' in html
    assert 'href="?status=blocked&amp;limit=5&amp;domain=ads.example.com"' in html


# --- Names with odd labels (x=1.doubleclick.net, a\032b.tracker.example) -------------

_ROW = re.compile(r'<td class="domain"><a href="([^"]*)">([^<]*)</a></td>')


def wire(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def shown_rows(html: str) -> list[tuple[str, str]]:
    """(link, text) of each row's domain cell, as a browser reads them."""
    return [(unescape(href), unescape(text)) for href, text in _ROW.findall(html)]


@pytest.mark.integration
def test_every_byte_value_in_a_label_shows_escaped_and_its_link_finds_that_row(viewer_web):
    names = [name_to_text(wire(b"a" + bytes([b]) + b"z", b"tunnel", b"example")) for b in range(256)]
    for name in names:
        make_query(name)
    html = viewer_web.get(URL, {"limit": "500"}).content.decode()
    rows = shown_rows(html)
    assert sorted(text for _, text in rows) == sorted(names)
    for link, text in rows:
        assert text.isascii() and text.isprintable()
        assert link.startswith("?limit=500&domain=")
        found = viewer_web.get(URL + link)
        assert found.context["form"].errors == {}, (text, found.context["form"].errors)
        assert domains_of(found) == [text] * names.count(text)  # "A" and "a" are one name


def test_a_63_byte_label_and_a_255_byte_name_show_and_link(viewer_web):
    long_label = name_to_text(wire(bytes(range(64, 127)), b"example", b"com"))
    longest = name_to_text(wire(b"\xff" * 63, b"\x00" * 63, b"=" * 63, b"." * 45, b"doubleclick", b"net"))
    assert len(longest) > 700  # each escaped byte is four characters: past QueryLog.domain's 253
    for name in (long_label, longest):
        make_query(name)
    rows = dict((text, link) for link, text in shown_rows(viewer_web.get(URL).content.decode()))
    assert set(rows) == {long_label, longest}
    for text, link in rows.items():
        assert domains_of(viewer_web.get(URL + link)) == [text]


def test_the_filter_box_reads_names_as_they_are_shown(viewer_web):
    make_query(r"a\032b.tracker.example")
    make_query("*.example.com")
    make_query("a.example.com")
    make_query("x=1&y=%41#z+.example.net")
    assert domains_of(viewer_web.get(URL, {"domain": r"A\032B.Tracker.Example."})) == [r"a\032b.tracker.example"]
    assert domains_of(viewer_web.get(URL, {"domain": "a b.tracker.example"})) == [r"a\032b.tracker.example"]
    assert domains_of(viewer_web.get(URL, {"domain": "*.tracker.example"})) == [r"a\032b.tracker.example"]
    assert domains_of(viewer_web.get(URL, {"domain": r"*\032*"})) == [r"a\032b.tracker.example"]
    assert domains_of(viewer_web.get(URL, {"domain": r"\042.example.com"})) == ["*.example.com"]
    assert domains_of(viewer_web.get(URL, {"domain": "x=1&y=%41#z+.example.net"})) == ["x=1&y=%41#z+.example.net"]
    # The substring's % and _ are themselves, not LIKE wildcards.
    assert domains_of(viewer_web.get(URL, {"domain": "*%41*"})) == ["x=1&y=%41#z+.example.net"]
    assert domains_of(viewer_web.get(URL, {"domain": "*a_b*"})) == []


@pytest.mark.parametrize("value", [r"\256.example", "a\\", "x" * 64 + ".example", ".", "a..b"])
def test_a_malformed_escaped_name_is_a_form_error(viewer_web, value):
    response = viewer_web.get(URL, {"domain": value})
    assert "domain" in response.context["form"].errors
    assert response.context["page"] is None


def test_an_odd_name_offers_to_block_its_nearest_parent(staff_web):
    make_query("x=1.doubleclick.net")
    make_query(r"\195\169.tracker.example")
    make_query("ads.example.com")
    make_query("127.0.0.1")
    make_query("x=1.localhost")
    html = staff_web.get(URL).content.decode()
    targets = re.findall(r'name="domain" value="([^"]*)"><input type="hidden" name="next"', html)
    assert sorted(targets) == ["ads.example.com", "doubleclick.net", "tracker.example"]
    assert ">Block doubleclick.net</button>" in html
    assert ">Block tracker.example</button>" in html
    assert html.count(">Block this domain</button>") == 1  # ads.example.com itself


def test_an_odd_blocked_name_offers_no_allow(staff_web):
    make_query("x=1.doubleclick.net", status="blocked", rule="list:ads")
    make_query("ads.example.com", status="blocked", rule="list:ads")
    html = staff_web.get(URL).content.decode()
    assert html.count("Allow this domain") == 1
    assert "not a plain name" in html


def test_an_odd_name_is_never_html(staff_web):
    make_query("<b>x</b>.example")
    make_query('"onmouseover=alert(1)".example')
    html = staff_web.get(URL).content.decode()
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;.example" in html
    assert '"onmouseover' not in html


def test_csv_export_neutralises_a_name_that_reads_as_a_formula(viewer_web):
    make_query("=1+2.example")
    body = b"".join(viewer_web.get(reverse("querylog-export")).streaming_content).decode()
    assert "'=1+2.example" in body


def test_it_says_which_forwarding_rule_and_upstream_a_query_went_to(viewer_web):
    make_query("nas.lan", status="forwarded", rule="forward:lan", upstream="192.168.1.1:53")
    make_query("printer.corp.lan", status="forwarded", rule="forward:corp.lan", upstream="[fd00::1]:5353")
    make_query("down.lan", status="error", rule="forward:lan", upstream="")
    page = unescape(viewer_web.get(URL).content.decode())
    assert "via 192.168.1.1 for lan<" in page
    assert "via [fd00::1]:5353 for corp.lan<" in page
    assert ">for lan<" in page  # no upstream answered


def test_stale_answers_have_a_filter_and_a_badge_of_their_own(viewer_web):
    make_query("news.example.com", status="stale")
    make_query("other.example.com", status="cached")

    response = viewer_web.get(URL, {"status": "stale"})

    assert response.status_code == 200, response.context["form"].errors
    assert domains_of(response) == ["news.example.com"]
    assert 'class="badge st-stale"' in response.content.decode()
