from __future__ import annotations

from django.db import models

# The engine logs names in presentation form (dnsengine.core.wire.name_to_text), where a byte that
# is not printable ASCII takes four characters (\DDD). A 255-byte name holds at most 250
# label bytes, in 4 labels: 250 * 4 characters and 3 dots, 1,003 in all.
DOMAIN_TEXT_MAX = 1004
# The longest status value ("ratelimited") with a little room.
STATUS_MAX = 12


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
        REFUSED = "refused", "Refused: client not allowed"
        RATELIMITED = "ratelimited", "Refused: rate limit"
        STALE = "stale", "Stale (upstreams down, expired answer served)"

    timestamp = models.DateTimeField()
    client = models.GenericIPAddressField(unpack_ipv4=False)
    protocol = models.CharField(max_length=3)
    domain = models.CharField(max_length=DOMAIN_TEXT_MAX)
    qtype = models.CharField(max_length=10)
    rcode = models.CharField(max_length=10)
    status = models.CharField(max_length=STATUS_MAX, choices=Status.choices)
    rule = models.CharField(max_length=255, blank=True, help_text="list or rule that decided it")
    upstream = models.CharField(max_length=64, blank=True, help_text="upstream that answered")
    duration_us = models.PositiveIntegerField(default=0)
    engine = models.CharField(max_length=200, blank=True)
    # The client's name and group as they were when the query was decided: text on the
    # row, not a key, so history needs no join and a rename does not rewrite the past.
    client_name = models.CharField(max_length=100, blank=True)
    client_group = models.CharField(max_length=100, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["timestamp"], name="ql_time"),
            models.Index(fields=["domain", "timestamp"], name="ql_domain_time"),
            models.Index(fields=["client", "timestamp"], name="ql_client_time"),
            models.Index(fields=["status", "timestamp"], name="ql_status_time"),
        ]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.client} {self.qtype} {self.domain} {self.status}"


# Rollups: counts the writer adds in the same transaction as the rows, so the
# dashboard reads a few hundred small rows instead of scanning QueryLog. Buckets are
# the UTC start of the minute/hour. Retention purges them with the rows.


class QueryRollup(models.Model):
    """Queries per UTC minute and status."""

    bucket = models.DateTimeField()
    status = models.CharField(max_length=STATUS_MAX)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "status"], name="qrollup_bucket_status")]

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H:%M} {self.status} {self.count}"


class DomainRollup(models.Model):
    """Queries per UTC hour, domain and status (top domains, top blocked)."""

    bucket = models.DateTimeField()
    domain = models.CharField(max_length=DOMAIN_TEXT_MAX)
    status = models.CharField(max_length=STATUS_MAX)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bucket", "domain", "status"], name="drollup_bucket_domain_status")
        ]
        indexes = [models.Index(fields=["bucket"], name="drollup_bucket")]

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H:00} {self.domain} {self.status} {self.count}"


class ClientRollup(models.Model):
    """Queries per UTC hour and client (top clients, the clients page), and how many were blocked."""

    bucket = models.DateTimeField()
    client = models.CharField(max_length=45)
    count = models.BigIntegerField(default=0)
    blocked = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "client"], name="crollup_bucket_client")]

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H:00} {self.client} {self.count}"


class AnswerRollup(models.Model):
    """Queries per UTC hour, query type, upstream and answer-time bucket.

    ``upstream`` is blank for queries no upstream answered (blocked, cached, local),
    and their ``time_bucket`` is 0. For forwarded ones ``time_bucket`` is
    ``querylog.rollups.time_bucket(duration_us)``: half-octave buckets, enough for a
    median and a 95th percentile without keeping every duration. Neither field names
    a domain or a client, so privacy levels 1 and 2 keep these counts too.
    """

    bucket = models.DateTimeField()
    qtype = models.CharField(max_length=10)
    upstream = models.CharField(max_length=64)
    time_bucket = models.PositiveSmallIntegerField(default=0)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bucket", "qtype", "upstream", "time_bucket"], name="arollup_bucket_qtype_up_time"
            )
        ]

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H:00} {self.qtype} {self.upstream or '-'} {self.time_bucket} {self.count}"


class RollupSummary(models.Model):
    """One closed UTC hour or day of rollups, reduced to what the dashboard needs.

    Built once from the rollups (a busy day takes about half a second to group)
    and shared by every web worker and engine through the database, so a fresh
    process's first dashboard view reads a few dozen rows instead of grouping a
    million hourly domain rollups. Written only once the period is well past (see
    querylog.selectors.SUMMARY_AFTER); deleted by retention with the rollups.
    """

    start = models.DateTimeField()  # UTC, on the hour (and at midnight for a day)
    hours = models.PositiveSmallIntegerField()  # 1 or 24
    minutes = models.JSONField()  # [[seconds since start, status, count], ...] from QueryRollup
    domains = models.JSONField()  # {domain: count}: the period's busiest (HOUR_TOP_K or DAY_TOP_K)
    blocked = models.JSONField()  # {domain: count}: the same among blocked queries
    clients = models.JSONField()  # {client: count}: the busiest CLIENT_TOP_K
    built_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["start", "hours"], name="rsummary_start_hours")]

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:00} +{self.hours}h summary"


class PrivacySettings(models.Model):
    """What the query log may keep, as set on /settings/privacy/: one row (pk 1).

    An environment variable set for a field wins over the row (querylog.privacy_settings);
    running engines read the result within GLORYHOLE_RELOAD_INTERVAL.
    """

    class Level(models.IntegerChoices):
        EVERYTHING = 0, "0: everything"
        NO_DOMAINS = 1, "1: domains hidden"
        NO_CLIENTS = 2, "2: domains and clients hidden"
        ANONYMOUS = 3, "3: anonymous (no rows, only per-minute totals)"

    level = models.PositiveSmallIntegerField(choices=Level.choices, default=Level.EVERYTHING)
    anonymize_clients = models.BooleanField(default=False)
    anonymize_v4_prefix = models.PositiveSmallIntegerField(default=24)
    anonymize_v6_prefix = models.PositiveSmallIntegerField(default=48)
    dont_log_clients = models.TextField(blank=True, help_text="IPs, CIDRs or group names, one a line")
    dont_log_domains = models.TextField(blank=True, help_text="example.com, or *.example.com with its subdomains")
    log_blocked_only = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "privacy settings"

    def __str__(self) -> str:
        return f"privacy level {self.level}"
