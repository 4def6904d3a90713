"""Downloading lists: conditional requests and every way a download goes wrong, against a loopback server."""

from __future__ import annotations

import gzip
import io

import pytest

from dnsengine.blocklists.fetch import FetchError, check_url, fetch_blocklist

HOSTS = "# a hosts file\n0.0.0.0 ads.example.com\n0.0.0.0 tracker.example.net\n"


def fetch(url: str, **kwargs):
    """fetch_blocklist with small, fast limits; (result, body bytes)."""
    options = {"max_bytes": 1 << 20, "timeout": 2.0, "max_seconds": 5.0, "max_redirects": 3} | kwargs
    dest = io.BytesIO()
    result = fetch_blocklist(url, dest, **options)
    return result, dest.getvalue()


def test_it_downloads_a_list_with_its_validators(list_server):
    url = list_server.serve("/hosts", HOSTS, etag='"v1"', last_modified="Wed, 01 Jan 2025 00:00:00 GMT")

    result, body = fetch(url)

    assert body == HOSTS.encode()
    assert (result.not_modified, result.size, result.etag, result.last_modified) == (
        False,
        len(HOSTS),
        '"v1"',
        "Wed, 01 Jan 2025 00:00:00 GMT",
    )
    assert result.content_type.startswith("text/plain")


def test_it_sends_the_validators_and_takes_a_304_as_not_modified(list_server):
    url = list_server.serve("/hosts", HOSTS, etag='"v1"')
    first, _ = fetch(url)

    second, body = fetch(url, etag=first.etag)

    assert second.not_modified and body == b"" and second.etag == '"v1"'
    assert list_server.requests[1][1]["If-None-Match"] == '"v1"'


def test_it_uses_if_modified_since_when_there_is_no_etag(list_server):
    stamp = "Wed, 01 Jan 2025 00:00:00 GMT"
    url = list_server.serve("/hosts", HOSTS, last_modified=stamp)

    result, _ = fetch(url, last_modified=stamp)

    assert result.not_modified
    assert list_server.requests[0][1]["If-Modified-Since"] == stamp


def test_it_follows_a_redirect_and_reports_the_final_url(list_server):
    final = list_server.serve("/final", HOSTS)
    start = list_server.serve("/start", status=302, location="/final")

    result, body = fetch(start)

    assert body == HOSTS.encode() and result.url == final


def test_it_decompresses_a_gzip_response(list_server):
    url = list_server.serve("/hosts", HOSTS, gzip=True)

    result, body = fetch(url)

    assert body == HOSTS.encode() and result.size == len(HOSTS)
    assert list_server.requests[0][1]["Accept-Encoding"] == "gzip"


def test_it_decompresses_a_gz_file_served_without_content_encoding(list_server):
    url = list_server.serve("/hosts.gz", gzip.compress(HOSTS.encode()), content_type="application/gzip")

    _, body = fetch(url)

    assert body == HOSTS.encode()


def test_it_reports_progress_as_bytes_arrive(list_server):
    url = list_server.serve("/hosts", HOSTS * 5000)
    seen = []

    fetch(url, on_progress=lambda received, total: seen.append((received, total)))

    assert seen[-1] == (len(HOSTS) * 5000, len(HOSTS) * 5000)
    assert len(seen) > 1 and [r for r, _ in seen] == sorted(r for r, _ in seen)


# --- failures: each one a FetchError that says what happened ----------------------------


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"status": 500}, r"answered HTTP 500"),
        ({"status": 404}, r"answered HTTP 404"),
        ({"status": 302, "location": "/it"}, r"redirects more than 3 times, or in a loop"),
        (
            {"body": "<!DOCTYPE html><html><body>Sign in to the Wi-Fi</body></html>", "content_type": "text/html"},
            r"sent an HTML page \(text/html\), not a blocklist",
        ),
        ({"body": "\n\n  <html><head><title>502</title></head></html>"}, r"sent an HTML page"),
        ({"body": ""}, r"sent an empty body"),
        ({"body": "a.example.com\n" * 100_000}, r"is 1,400,000 bytes, over the 1,048,576-byte limit"),
        ({"body": "a.example.com\n" * 100_000, "send_length": False}, r"over the 1,048,576-byte limit"),
        ({"body": "\ufeffa.example.com".encode("utf-16")}, r"UTF-16"),
    ],
    ids=["500", "404", "redirect-loop", "html", "html-no-type", "empty", "too-big", "too-big-no-length", "utf16"],
)
def test_a_bad_answer_is_a_fetch_error(list_server, route, message):
    url = list_server.serve("/it", **route)

    with pytest.raises(FetchError, match=message):
        fetch(url)


def test_a_redirect_cycle_between_two_urls_ends(list_server):
    list_server.serve("/a", status=301, location="/b")
    url = list_server.serve("/b", status=301, location="/a")

    with pytest.raises(FetchError, match="redirects more than 3 times"):
        fetch(url)
    assert len(list_server.requests) <= 5


def test_a_redirect_to_another_scheme_is_refused(list_server):
    url = list_server.serve("/it", status=302, location="file:///etc/passwd")

    with pytest.raises(FetchError, match="only http and https are followed"):
        fetch(url)


def test_an_endless_body_stops_at_the_size_cap(list_server):
    # "Serves gigabytes": no Content-Length, and no end.
    url = list_server.serve("/endless", "# huge\n", endless=b"x.example.com\n" * 1000)

    with pytest.raises(FetchError, match="over the 1,048,576-byte limit"):
        fetch(url)


def test_a_gzip_bomb_stops_at_the_size_cap(list_server):
    url = list_server.serve("/bomb", b"a.example.com\n" * 1_000_000, gzip=True)  # 14 MB in ~30 kB

    with pytest.raises(FetchError, match="over the 1,048,576-byte limit"):
        fetch(url)


def test_a_server_that_does_not_answer_times_out(list_server):
    url = list_server.serve("/slow", HOSTS, delay=10)

    with pytest.raises(FetchError, match=r"within 0.3 s|sent nothing for 0.3 s"):
        fetch(url, timeout=0.3)


def test_a_server_that_drips_hits_the_total_time_limit(list_server):
    # Each read returns within the timeout, so only the overall limit can stop it.
    url = list_server.serve("/drip", "# slow\n", endless=b"a.example.com\n", drip=0.05)

    with pytest.raises(FetchError, match=r"took longer than 0\.5 s"):
        fetch(url, max_seconds=0.5)


def test_a_refused_connection_is_a_fetch_error(list_server):
    url = list_server.url("/x")
    list_server.stop()

    with pytest.raises(FetchError, match="cannot download"):
        fetch(url, timeout=0.5)


@pytest.mark.parametrize("url", ["ftp://example.com/list", "file:///etc/hosts", "example.com/hosts", "http://", ""])
def test_only_absolute_http_urls_are_fetched(url):
    with pytest.raises(FetchError, match="is not an http or https URL"):
        check_url(url)
