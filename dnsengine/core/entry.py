"""The small value the DNS path hands to the query logger for each answered query."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class QueryLogEntry:
    timestamp: float  # time.time() when the query arrived
    client: str
    protocol: str  # "udp" | "tcp"
    domain: str
    qtype: str
    rcode: str
    status: str  # QueryLog.Status value
    rule: str = ""
    upstream: str = ""
    duration_us: int = 0
    client_name: str = ""  # the name the engine knew for the client, "" if none
    client_group: str = ""  # the group whose policy decided the query
