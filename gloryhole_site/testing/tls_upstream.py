"""A DNS-over-TLS server on loopback whose misbehaviour a test controls.

What unbound will not do on request: answer a batch of pipelined queries in
reverse order (`reverse_batch`), close the connection after some answers
(`drop_after`), close it with a query unanswered (`lose_after`), and count
connections and the most queries it saw in flight on one. Answers every A query with `address`; never forwards anything.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from pathlib import Path

from dnslib import QTYPE, RR, A, DNSRecord


def _recv_exact(conn: ssl.SSLSocket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class TlsUpstream:
    def __init__(self, cert: Path, key: Path, address: str = "192.0.2.53") -> None:
        self.address = address
        self.reverse_batch = 0  # >1: wait for this many queries, answer them last first
        self.drop_after = 0  # >0: close each connection after this many answers
        self.delay = 0.0  # seconds to wait before each answer
        self.hang_up = False  # close the connection as soon as a query arrives, unanswered
        self.lose_after = 0  # >0: after this many answers, read one more query and close without answering it
        self.connections = 0
        self.most_in_flight = 0
        self.queries = 0
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert), str(key))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TlsUpstream:
        threading.Thread(target=self._accept, name="test-tls-upstream", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.close()
                except OSError:
                    pass

    def __enter__(self) -> TlsUpstream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _answer(self, query: bytes) -> bytes:
        request = DNSRecord.parse(query)
        reply = request.reply()
        if request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.address), ttl=300))
        return reply.pack()

    def _serve(self, raw: socket.socket) -> None:
        try:
            conn = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self._lock:
            self.connections += 1
            self._conns.append(conn)
        answered = 0
        batch: list[bytes] = []
        try:
            while not self._stop.is_set():
                head = _recv_exact(conn, 2)
                if head is None:
                    return
                query = _recv_exact(conn, struct.unpack("!H", head)[0])
                if query is None:
                    return
                self.queries += 1
                if self.hang_up or (self.lose_after and answered >= self.lose_after):
                    return
                batch.append(query)
                self.most_in_flight = max(self.most_in_flight, len(batch))
                if self.reverse_batch > 1 and len(batch) < self.reverse_batch:
                    continue
                if self.delay:
                    time.sleep(self.delay)
                out = b""
                for q in reversed(batch):
                    reply = self._answer(q)
                    out += struct.pack("!H", len(reply)) + reply
                answered += len(batch)
                batch = []
                conn.sendall(out)
                if self.drop_after and answered >= self.drop_after:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()
