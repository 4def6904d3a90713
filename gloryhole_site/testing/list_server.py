"""A blocklist server on 127.0.0.1 for tests: fixed bodies, ETags, redirects, slow and endless answers.

Tests never reach the internet: every URL they fetch points here.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    etag: str = ""  # when set, a matching If-None-Match gets 304
    last_modified: str = ""  # when set, sent, and a matching If-Modified-Since gets 304
    location: str = ""  # for 3xx
    gzip: bool = False  # Content-Encoding: gzip
    send_length: bool = True  # Content-Length, or read-until-close
    delay: float = 0.0  # seconds before the status line
    endless: bytes = b""  # after the body, repeat this until the client hangs up
    drip: float = 0.0  # seconds between endless pieces
    headers: dict[str, str] = field(default_factory=dict)


class ListServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()  # set at stop: ends delays and drips at once
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay and server.release.wait(route.delay):
                    return
                etag_matches = route.etag and self.headers.get("If-None-Match") == route.etag
                date_matches = route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified
                if etag_matches or date_matches:
                    self.send_response(304)
                    self.end_headers()
                    return
                body = gzip.compress(route.body) if route.gzip else route.body
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                if route.location:
                    self.send_header("Location", route.location)
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)
                if route.gzip:
                    self.send_header("Content-Encoding", "gzip")
                if route.send_length and not route.endless:
                    self.send_header("Content-Length", str(len(body)))
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                    while route.endless and not server.release.wait(route.drip):
                        self.wfile.write(route.endless)
                except OSError:
                    pass  # the client gave up, as it should

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="list-server", daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body: bytes | str = b"", **route) -> str:
        """Serve `body` (or a route described by keywords) at `path`; the full URL."""
        self.routes[path] = Route(body=body.encode() if isinstance(body, str) else body, **route)
        return self.url(path)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def start(self) -> ListServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
