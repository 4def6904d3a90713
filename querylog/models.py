from __future__ import annotations

from django.db import models


class QueryLog(models.Model):
    """One answered DNS query.

    Indexes only for what the history page filters on: each extra index costs
    write speed on the hot table.
    """

    class Status(models.TextChoices):
        BLOCKED = "blocked", "Blocked"
        ALLOWED = "allowed", "Allowed (allowlist, forwarded)"
        FORWARDED = "forwarded", "Forwarded"
        CACHED = "cached", "Cached"
        LOCAL = "local", "Local record"
        ERROR = "error", "Error"

    timestamp = models.DateTimeField()
    client = models.GenericIPAddressField(unpack_ipv4=False)
    protocol = models.CharField(max_length=3)
    domain = models.CharField(max_length=253)
    qtype = models.CharField(max_length=10)
    rcode = models.CharField(max_length=10)
    status = models.CharField(max_length=10, choices=Status.choices)
    rule = models.CharField(max_length=255, blank=True, help_text="list or rule that decided it")
    upstream = models.CharField(max_length=64, blank=True, help_text="upstream that answered")
    duration_us = models.PositiveIntegerField(default=0)
    engine = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["timestamp"], name="ql_time"),
            models.Index(fields=["domain", "timestamp"], name="ql_domain_time"),
            models.Index(fields=["client", "timestamp"], name="ql_client_time"),
            models.Index(fields=["status", "timestamp"], name="ql_status_time"),
        ]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.client} {self.qtype} {self.domain} {self.status}"
