"""A tiny reverse-lookup (PTR) server on loopback, standing in for a router that names its DHCP clients.

    with PtrResponder({"127.0.0.2": "annas-phone.lan"}) as router:
        ...  # GLORYHOLE_CLIENT_PTR_RESOLVER = router.address

`replies` can be replaced to answer with anything (hostile tests): a function
from the query's bytes to the list of datagrams to send back.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable

from dnslib import PTR, QTYPE, RR, DNSRecord


class PtrResponder:
    def __init__(self, names: dict[str, str] | None = None, *, silent: bool = False, host: str = "127.0.0.1") -> None:
        # reverse name ("2.0.0.127.in-addr.arpa") -> host name
        self.names = {ipaddress.ip_address(ip).reverse_pointer: name for ip, name in (names or {}).items()}
        self.silent = silent
        self.replies: Callable[[bytes], list[bytes]] = self.answer
        self.asked: list[str] = []  # reverse names asked, in order
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="fake-ptr", daemon=True)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def answer(self, data: bytes) -> list[bytes]:
        """A PTR record for a name in `names`, NXDOMAIN for any other."""
        request = DNSRecord.parse(data)
        reverse = str(request.q.qname).rstrip(".").lower()
        reply = request.reply()
        name = self.names.get(reverse)
        if request.q.qtype == QTYPE.PTR and name is not None:
            reply.add_answer(RR(request.q.qname, QTYPE.PTR, rdata=PTR(name + "."), ttl=300))
        else:
            reply.header.rcode = 3
        return [reply.pack()]

    def _loop(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            if self._closed:
                return
            try:
                self.asked.append(str(DNSRecord.parse(data).q.qname).rstrip(".").lower())
                if self.silent:
                    continue
                for reply in self.replies(data):
                    self.sock.sendto(reply, addr)
            except Exception:  # a test's reply function may fail on purpose; keep serving
                continue

    def start(self) -> PtrResponder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(2)

    def __enter__(self) -> PtrResponder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
