"""What the engine serves from: block lists, rules, the allowlist, local records.

The engine never gets told about a change directly: every write here bumps
ConfigGeneration (see signals.py and services.py) and each engine polls that one
row, so several engines on one database all pick changes up.
"""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone

from dnsengine.core.names import normalize_domain


def validate_domain(value: str) -> None:
    # Single labels pass: a person may block one (a local name, or a whole TLD) after
    # the guard rails asked for a confirmation (dnsengine.guardrails).
    if normalize_domain(value, require_dot=False) is None:
        raise ValidationError(f"{value!r} is not a valid domain name")


class ConfigGeneration(models.Model):
    """One row (pk=1) whose value goes up on every change an engine must reload for."""

    value = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"generation {self.value}"


class Blocklist(models.Model):
    class Format(models.TextChoices):
        AUTO = "auto", "Auto-detect"
        HOSTS = "hosts", "Hosts file"
        DOMAINS = "domains", "Plain domains"
        ADBLOCK = "adblock", "Adblock (||domain^)"
        # Never auto-detected: see dnsengine.blocklists.formats.FORMATS.
        REGEX = "regex", "Regex list (one per line)"

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(max_length=1000, blank=True, help_text="URL or file path it was loaded from")
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.AUTO)
    enabled = models.BooleanField(default=True)
    domain_count = models.PositiveIntegerField(default=0)
    last_loaded = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # A subscription: `manage.py updateblocklists` and the engine's updater fetch it.
    url = models.URLField(
        max_length=1000,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="http(s) address to download the list from; empty for a list loaded by hand",
    )
    # What the server said about the contents we hold, for conditional requests.
    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    last_checked = models.DateTimeField(null=True, blank=True, help_text="last download attempt, successful or not")
    next_update = models.DateTimeField(null=True, blank=True, help_text="when the updater fetches it next; empty: soon")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BlockedDomain(models.Model):
    """One blocked name of a list; it blocks its subdomains too, as Adblock ||domain^ does."""

    blocklist = models.ForeignKey(Blocklist, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, validators=[validate_domain])

    class Meta:
        constraints = [models.UniqueConstraint(fields=["blocklist", "domain"], name="uniq_blocklist_domain")]

    def __str__(self) -> str:
        return self.domain

    def clean(self) -> None:
        self.domain = normalize_domain(self.domain, require_dot=False) or self.domain


class AllowedDomain(models.Model):
    """Wins over every block rule."""

    domain = models.CharField(max_length=253, unique=True, validators=[validate_domain])
    include_subdomains = models.BooleanField(default=False, help_text="Also allow every name below this one")
    enabled = models.BooleanField(default=True)
    comment = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain

    def clean(self) -> None:
        self.domain = normalize_domain(self.domain, require_dot=False) or self.domain


class BlockRule(models.Model):
    class Kind(models.TextChoices):
        WILDCARD = "wildcard", "Wildcard (*.example.com, ads*.example.com)"
        REGEX = "regex", "Regular expression"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.WILDCARD)
    pattern = models.CharField(max_length=500)
    enabled = models.BooleanField(default=True)
    comment = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now)
    # Set for the rules of a regex list: written by its imports, in force while the list is enabled.
    blocklist = models.ForeignKey(
        Blocklist,
        on_delete=models.CASCADE,
        related_name="rules",
        null=True,
        blank=True,
        help_text="the regex list this rule came from; empty for a rule added by hand",
    )

    class Meta:
        ordering = ["kind", "pattern"]
        constraints = [
            # A pattern may be both a hand-made rule and in any number of lists.
            models.UniqueConstraint(
                fields=["kind", "pattern"], condition=models.Q(blocklist__isnull=True), name="uniq_blockrule"
            ),
            models.UniqueConstraint(fields=["blocklist", "kind", "pattern"], name="uniq_blocklist_rule"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.pattern}"

    def clean(self) -> None:
        from dnsengine.core.rules import compile_rule

        try:
            compile_rule(self.kind, self.pattern)
        except ValueError as exc:
            raise ValidationError({"pattern": str(exc)}) from None


class LocalRecord(models.Model):
    class Type(models.TextChoices):
        A = "A", "A"
        AAAA = "AAAA", "AAAA"
        CNAME = "CNAME", "CNAME"

    name = models.CharField(max_length=253)
    type = models.CharField(max_length=5, choices=Type.choices)
    value = models.CharField(max_length=253)
    ttl = models.PositiveIntegerField(default=300)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name", "type"]
        constraints = [models.UniqueConstraint(fields=["name", "type", "value"], name="uniq_localrecord")]

    def __str__(self) -> str:
        return f"{self.name} {self.type} {self.value}"

    def clean(self) -> None:
        name = normalize_domain(self.name, require_dot=False)
        if name is None:
            raise ValidationError({"name": f"{self.name!r} is not a valid domain name"})
        self.name = name
        if self.ttl > 604800:
            raise ValidationError({"ttl": "at most 604800 (7 days)"})
        if self.type == self.Type.A:
            try:
                self.value = str(ipaddress.IPv4Address(self.value.strip()))
            except ValueError:
                raise ValidationError({"value": f"{self.value!r} is not an IPv4 address"}) from None
        elif self.type == self.Type.AAAA:
            try:
                self.value = str(ipaddress.IPv6Address(self.value.strip()))
            except ValueError:
                raise ValidationError({"value": f"{self.value!r} is not an IPv6 address"}) from None
        elif self.type == self.Type.CNAME:
            target = normalize_domain(self.value, require_dot=False)
            if target is None:
                raise ValidationError({"value": f"{self.value!r} is not a valid domain name"})
            if target == name:
                raise ValidationError({"value": "a CNAME cannot point at itself"})
            self.value = target


class BlockingPause(models.Model):
    """One row (pk=1): blocking is off for everyone while it is active and not past `until`.

    Not part of the config generation: pausing must not make the engines rebuild
    a million-name matcher, so they poll this row on its own (loader.ConfigWatcher).
    """

    active = models.BooleanField(default=False)
    until = models.DateTimeField(null=True, blank=True, help_text="empty while active: until someone resumes")
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.CharField(max_length=150, blank=True)

    def __str__(self) -> str:
        if not self.active:
            return "blocking on"
        return f"blocking paused until {self.until:%Y-%m-%d %H:%M:%S}" if self.until else "blocking paused"


class EngineStatus(models.Model):
    """Heartbeat of one running engine, upserted every few seconds; the web reads it."""

    name = models.CharField(max_length=200, unique=True, help_text="host:port of the engine")
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    queries_total = models.BigIntegerField(default=0)
    qps = models.FloatField(default=0)
    buffer_size = models.PositiveIntegerField(default=0)
    buffer_capacity = models.PositiveIntegerField(default=0)
    drops = models.BigIntegerField(default=0)
    written = models.BigIntegerField(default=0)
    write_errors = models.BigIntegerField(default=0)
    write_rate = models.FloatField(default=0)
    workers = models.PositiveIntegerField(default=0)
    mode = models.CharField(max_length=20, blank=True)
    generation = models.BigIntegerField(default=0)
    threads = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "engine statuses"

    def __str__(self) -> str:
        return self.name
