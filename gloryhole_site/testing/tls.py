"""Certificates made at test time, and DoT/DoH clients for the engine's encrypted listeners."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import struct
from pathlib import Path

import dns.message
import dns.query
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded


def make_certificate(directory: Path, name: str = "dns.test", *, stem: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for `name`, localhost and 127.0.0.1: (cert.pem, key.pem) in `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def client_context(cafile: Path) -> ssl.SSLContext:
    """A client context that trusts only `cafile` (the test's self-signed certificate)."""
    return ssl.create_default_context(cafile=str(cafile))


def dot_query(port: int, cafile: Path, name: str = "example.com", rdtype: str = "A", *, source: str | None = None,
              timeout: float = 3.0) -> dns.message.Message:  # fmt: skip
    """One query over DoT to 127.0.0.1:`port`, from `source` (any 127.0.0.x) if given."""
    return dns.query.tls(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=timeout,
                         source=source, ssl_context=client_context(cafile), server_hostname="dns.test")  # fmt: skip


def doh_query(port: int, cafile: Path, name: str = "example.com", rdtype: str = "A", *, post: bool = True,
              http2: bool = False, timeout: float = 3.0) -> dns.message.Message:  # fmt: skip
    """One query over DoH (HTTP/1.1, or HTTP/2 with `http2`) to https://127.0.0.1:`port`/dns-query."""
    version = dns.query.HTTPVersion.H2 if http2 else dns.query.HTTPVersion.H1
    return dns.query.https(dns.message.make_query(name, rdtype), f"https://127.0.0.1:{port}/dns-query",
                           timeout=timeout, post=post, verify=client_context(cafile),
                           http_version=version)  # fmt: skip


def tls_connect(port: int, cafile: Path, *, source: str | None = None, timeout: float = 3.0) -> ssl.SSLSocket:
    """A blocking TLS connection to 127.0.0.1:`port`, handshake done."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                   source_address=(source, 0) if source else None)  # fmt: skip
    return client_context(cafile).wrap_socket(raw, server_hostname="dns.test")


def h2_exchange(port: int, cafile: Path, requests: list[tuple[list, bytes]],
                timeout: float = 3.0) -> list[tuple[int | None, bytes]]:  # fmt: skip
    """Send every (headers, body) request at once as HTTP/2 streams on one connection; (status, body) of each."""
    context = client_context(cafile)
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with context.wrap_socket(raw, server_hostname="dns.test") as sock:
        assert sock.selected_alpn_protocol() == "h2"
        conn = H2Connection(config=H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        ids = []
        for headers, body in requests:
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, headers, end_stream=not body)
            if body:
                conn.send_data(stream_id, body, end_stream=True)
            ids.append(stream_id)
        sock.sendall(conn.data_to_send())
        results: dict[int, list] = {stream_id: [None, b""] for stream_id in ids}
        ended: set[int] = set()
        while len(ended) < len(ids):
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, ResponseReceived):
                    results[event.stream_id][0] = int(dict(event.headers)[b":status"])
                elif isinstance(event, DataReceived):
                    results[event.stream_id][1] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    ended.add(event.stream_id)
            sock.sendall(conn.data_to_send())
    return [(results[stream_id][0], results[stream_id][1]) for stream_id in ids]


def framed(message: dns.message.Message) -> bytes:
    wire = message.to_wire()
    return struct.pack("!H", len(wire)) + wire


def read_framed(sock: ssl.SSLSocket) -> dns.message.Message:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    (length,) = struct.unpack("!H", exactly(2))
    return dns.message.from_wire(exactly(length))
