"""Downloading a blocklist over HTTP(S), defensively.

Lists come from servers we do not control, so every way a download can go
wrong ends in a FetchError whose message says what happened, for a person:
an HTTP error, a timeout (per read, and for the whole download), a redirect
loop, a body over the size cap (checked on the bytes as they arrive and, for
gzip, after decompression), an empty body, an HTML page instead of a list.

The body is written to a file the caller provides, so a 100 MB list never sits
in memory. Conditional requests (ETag / Last-Modified) let an unchanged list
cost one small round trip.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

from dnsengine.blocklists.formats import BlocklistError

USER_AGENT = "Glory-Hole blocklist updater (+https://github.com/glory-hole)"
CHUNK_SIZE = 1 << 16
_SNIFF_BYTES = 1024
_GZIP_MAGIC = b"\x1f\x8b"

Progress = Callable[[int, int | None], None]  # (bytes received, Content-Length or None)


class FetchError(BlocklistError):
    """A download that did not produce a usable body; the list keeps its contents."""


@dataclass(slots=True)
class FetchResult:
    url: str  # after redirects
    not_modified: bool  # 304: the copy we hold is current, nothing was written
    size: int = 0  # bytes written to the destination (after decompression)
    etag: str = ""
    last_modified: str = ""
    content_type: str = ""


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, at most `limit` hops in all, and only to http(s) (never file:// or ftp://).

    urllib's own limit counts distinct URLs, so a loop between two URLs would
    go round several times first; this counts every hop.
    """

    def __init__(self, origin: str, limit: int) -> None:
        self.origin = origin
        self.limit = limit

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        hops = getattr(req, "redirect_hops", 0) + 1
        scheme = urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https") or hops > self.limit:
            fp.close()
            if hops > self.limit:
                raise FetchError(f"{self.origin} redirects more than {self.limit} times, or in a loop")
            raise FetchError(f"{self.origin} redirects to {newurl!r}: only http and https are followed")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.redirect_hops = hops
        return new


def check_url(url: str) -> str:
    """The URL stripped, or FetchError when it is not an absolute http(s) URL."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r} is not an http or https URL")
    return url


def fetch_blocklist(
    url: str,
    dest: BinaryIO,
    *,
    etag: str = "",
    last_modified: str = "",
    max_bytes: int,
    timeout: float,
    max_seconds: float,
    max_redirects: int,
    on_progress: Progress | None = None,
) -> FetchResult:
    """Download `url` into `dest` (an open binary file, written from its current position).

    `etag` / `last_modified` are the validators of the copy we hold: a server
    that agrees it is current answers 304 and the result says not_modified.
    `timeout` bounds each connect and read, `max_seconds` the whole download
    (a server dripping one byte every few seconds never trips the first).
    """
    url = check_url(url)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip", "Accept": "text/plain, */*;q=0.5"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    opener = urllib.request.build_opener(_RedirectHandler(url, max_redirects))
    request = urllib.request.Request(url, headers=headers)
    deadline = time.monotonic() + max_seconds
    try:
        with opener.open(request, timeout=timeout) as response:
            return _read_body(response, url, dest, max_bytes, deadline, max_seconds, on_progress)
    except urllib.error.HTTPError as exc:
        try:
            if exc.code == 304:
                return FetchResult(exc.filename or url, True, etag=etag, last_modified=last_modified)
            if 300 <= exc.code < 400 and "not allowed" in str(exc.reason):
                # urllib's own refusal of a redirect to file:// and the like, before ours runs.
                raise FetchError(f"{url} redirects to {exc.filename!r}: only http and https are followed") from None
            raise FetchError(f"{url} answered HTTP {exc.code} {exc.reason}") from None
        finally:
            if exc.fp is not None:
                exc.close()
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise FetchError(f"{url} did not answer within {timeout:g} s") from None
        raise FetchError(f"cannot download {url}: {exc.reason}") from None
    except TimeoutError:
        raise FetchError(f"{url} sent nothing for {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        # A reset connection, a bad status line, a body shorter than its Content-Length.
        raise FetchError(f"downloading {url} failed: {type(exc).__name__} {exc}".rstrip()) from None


def _read_body(response, url: str, dest: BinaryIO, max_bytes: int, deadline: float, max_seconds: float,
               on_progress: Progress | None) -> FetchResult:  # fmt: skip
    length_header = response.headers.get("Content-Length")
    total = int(length_header) if length_header and length_header.isdigit() else None
    encoding = (response.headers.get("Content-Encoding") or "").strip().lower()
    if total is not None and total > max_bytes:
        raise FetchError(f"{url} is {total:,} bytes, over the {max_bytes:,}-byte limit")
    if encoding not in ("", "identity", "gzip"):
        raise FetchError(f"{url} came with Content-Encoding {encoding!r}, which we do not decode")
    result = FetchResult(
        response.geturl() or url,
        False,
        etag=response.headers.get("ETag", ""),
        last_modified=response.headers.get("Last-Modified", ""),
        content_type=response.headers.get("Content-Type", ""),
    )
    inflate = None
    received = 0
    head = b""
    while True:
        if time.monotonic() > deadline:
            raise FetchError(f"downloading {url} took longer than {max_seconds:g} s")
        # read1: whatever has arrived, so a slow drip still comes back to the deadline check.
        chunk = response.read1(CHUNK_SIZE)
        if not chunk:
            break
        received += len(chunk)
        if on_progress is not None:
            on_progress(received, total)
        if inflate is None and not head:
            # A .gz file served as is gets the same treatment as Content-Encoding: gzip.
            if encoding == "gzip" or chunk.startswith(_GZIP_MAGIC):
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pieces = [chunk] if inflate is None else _inflate(inflate, chunk, max_bytes - result.size + 1, url)
        for piece in pieces:
            if len(head) < _SNIFF_BYTES:
                head += piece[: _SNIFF_BYTES - len(head)]
                if len(head) >= _SNIFF_BYTES:
                    _sniff(head, url, result.content_type)
            result.size += len(piece)
            if result.size > max_bytes:
                raise FetchError(f"{url} is over the {max_bytes:,}-byte limit; nothing of it was used")
            dest.write(piece)
    if inflate is not None and not inflate.eof:
        raise FetchError(f"{url} ended in the middle of its gzip stream")
    if not result.size:
        raise FetchError(f"{url} sent an empty body")
    _sniff(head, url, result.content_type)
    return result


def _inflate(inflate, chunk: bytes, room: int, url: str) -> list[bytes]:
    """Decompress a chunk without ever producing more than `room` bytes + one chunk: a gzip bomb stops early."""
    pieces = []
    data = chunk
    try:
        while data:
            piece = inflate.decompress(data, CHUNK_SIZE)
            pieces.append(piece)
            room -= len(piece)
            if room <= 0:
                break
            data = inflate.unconsumed_tail
    except zlib.error as exc:
        raise FetchError(f"{url} sent a broken gzip stream: {exc}") from None
    return pieces


def _sniff(head: bytes, url: str, content_type: str) -> None:
    """Refuse what is clearly not a list: an HTML page (a captive portal, an error page), UTF-16."""
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if start.startswith((b"<!doctype", b"<html", b"<head", b"<?xml")) or b"<html" in start[:512]:
        kind = f" ({content_type})" if content_type else ""
        raise FetchError(f"{url} sent an HTML page{kind}, not a blocklist: a login page or an error page?")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FetchError(f"{url} sent UTF-16 text; blocklists are read as UTF-8")
