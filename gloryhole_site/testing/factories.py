"""Builders of test rows shared by the web tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from django.utils import timezone

from querylog.models import QueryLog

_counter = itertools.count()


def make_query(
    domain: str = "example.com",
    *,
    client: str = "192.0.2.10",
    status: str = "forwarded",
    when: datetime | None = None,
    qtype: str = "A",
    rcode: str = "NOERROR",
    rule: str = "",
    upstream: str = "",
) -> QueryLog:
    return QueryLog.objects.create(
        timestamp=when or timezone.now() - timedelta(seconds=next(_counter)),
        client=client,
        protocol="udp",
        domain=domain,
        qtype=qtype,
        rcode=rcode,
        status=status,
        rule=rule,
        upstream=upstream,
        duration_us=1500,
    )
