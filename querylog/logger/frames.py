"""The messages between the engine and its query-log writer process (mode ``process``).

One message is a 4-byte length and a ``marshal`` of plain values: a batch is a list
of tuples of a ``QueryLogEntry``'s fields, built in C (``operator.attrgetter``) and
serialised in C, so the engine's share of a batch is a few hundred nanoseconds a row
(``make bench``). marshal, not pickle: only ints, floats, str, lists, tuples and dicts
cross the pipe, and both ends are the same interpreter (the child is started with
``sys.executable``), so marshal's format never differs between them.

Engine to child: ``("hello", config)``, ``("policy", pickled PrivacyPolicy)``,
``("batch", seq, rows)``, ``("abandon",)``, ``("stop",)``.
Child to engine: ``("ready", pid, CPU seconds its start took)``, ``("ack", seq, written, invalid, given_up,
write_errors, not_logged, seconds, wal)`` after each batch's commit (or give-up),
``("error", text)`` when it cannot start.

No Django here: the child imports this before it sets Django up.
"""

from __future__ import annotations

import marshal
import operator
import socket
import struct
from dataclasses import fields

from dnsengine.core.entry import QueryLogEntry

ENTRY_FIELDS: tuple[str, ...] = (
    "timestamp", "client", "protocol", "domain", "qtype", "rcode", "status", "rule", "upstream", "duration_us",
    "client_name", "client_group",
)  # fmt: skip
if tuple(f.name for f in fields(QueryLogEntry)) != ENTRY_FIELDS:
    raise RuntimeError("QueryLogEntry's fields differ from querylog.logger.frames.ENTRY_FIELDS: update both")

_HEADER = struct.Struct("!I")
MARSHAL_VERSION = 4
entry_tuple = operator.attrgetter(*ENTRY_FIELDS)


class LinkClosed(Exception):
    """The other end closed the connection or went away."""


def batch_rows(entries) -> list[tuple]:
    """The entries as tuples of their fields, in ENTRY_FIELDS order (in C: no Python frame per entry)."""
    return list(map(entry_tuple, entries))


def entries_from_rows(rows) -> list[QueryLogEntry]:
    return [QueryLogEntry(*row) for row in rows]


def send(sock: socket.socket, message: tuple) -> None:
    data = marshal.dumps(message, MARSHAL_VERSION)
    try:
        sock.sendall(_HEADER.pack(len(data)))
        sock.sendall(data)
    except OSError as exc:
        raise LinkClosed(str(exc)) from exc


def _read_exactly(sock: socket.socket, n: int) -> bytearray:
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        try:
            k = sock.recv_into(view[got:], n - got)
        except OSError as exc:
            raise LinkClosed(str(exc)) from exc
        if not k:
            raise LinkClosed("end of stream")
        got += k
    return buffer


def recv(sock: socket.socket) -> tuple:
    (n,) = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
    return marshal.loads(_read_exactly(sock, n))
