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

from dnsengine.core.localrecords import RecordError, parse_owner, parse_value
from dnsengine.core.names import normalize_domain
from dnsengine.core.options import ConfigError, parse_upstreams


def validate_domain(value: str) -> None:
    # Single labels pass: a person may block one (a local name, or a whole TLD) after
    # the guard rails asked for a confirmation (dnsengine.guardrails).
    if normalize_domain(value, require_dot=False) is None:
        raise ValidationError(f"{value!r} is not a valid domain name")


GROUPS_HELP = "the client groups it applies to; none: every group"


class ConfigGeneration(models.Model):
    """One row (pk=1) whose value goes up on every change an engine must reload for."""

    value = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"generation {self.value}"


class EngineSetting(models.Model):
    """A value saved on /settings/, by its environment variable's name (GLORYHOLE_UPSTREAMS).

    The text as typed, parsed by that variable's own parser (dnsengine.engine_settings);
    no row means the environment's value or the default. An environment variable that is
    set wins over the row.
    """

    name = models.CharField(max_length=64, primary_key=True)
    value = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class FetchState(models.TextChoices):
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"


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
    groups = models.ManyToManyField("ClientGroup", blank=True, related_name="blocklists", help_text=GROUPS_HELP)
    # "Fetch now" from the lists page: the state lives here, not in a web worker's memory,
    # so whichever worker answers the page's polling sees it.
    fetch_state = models.CharField(max_length=10, choices=FetchState.choices, blank=True)
    fetch_requested = models.DateTimeField(null=True, blank=True)
    fetch_message = models.TextField(blank=True, help_text="the last fetch-now's result or error")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BlocklistUpdate(models.Model):
    """One update of a subscribed list (from the updater, the command or "fetch now"); the last few per list."""

    blocklist = models.ForeignKey(Blocklist, on_delete=models.CASCADE, related_name="updates")
    at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10)  # importer.UPDATED | UNCHANGED | FAILED
    entries = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.blocklist_id} {self.at:%Y-%m-%d %H:%M} {self.status}"


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
    # Who made the last change from the web, and when (the domains page shows both).
    changed = models.DateTimeField(null=True, blank=True)
    changed_by = models.CharField(max_length=150, blank=True)
    groups = models.ManyToManyField("ClientGroup", blank=True, related_name="allowed_domains", help_text=GROUPS_HELP)

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
    # Who made the last change from the web, and when (the domains page shows both).
    changed = models.DateTimeField(null=True, blank=True)
    changed_by = models.CharField(max_length=150, blank=True)
    # Set for the rules of a regex list: written by its imports, in force while the list is enabled.
    blocklist = models.ForeignKey(
        Blocklist,
        on_delete=models.CASCADE,
        related_name="rules",
        null=True,
        blank=True,
        help_text="the regex list this rule came from; empty for a rule added by hand",
    )
    # A regex list's rules follow their list's groups; this is for rules added by hand.
    groups = models.ManyToManyField("ClientGroup", blank=True, related_name="block_rules", help_text=GROUPS_HELP)

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
    """A name this network answers itself; the value syntax of each type is in docs/local-dns.md.

    A name may be a wildcard (`*.dev.lan`: every name below dev.lan). A and AAAA
    records get their PTR generated unless a PTR record names that address.
    """

    class Type(models.TextChoices):
        A = "A", "A"
        AAAA = "AAAA", "AAAA"
        CNAME = "CNAME", "CNAME"
        PTR = "PTR", "PTR"
        TXT = "TXT", "TXT"
        MX = "MX", "MX"
        SRV = "SRV", "SRV"

    name = models.CharField(
        max_length=253, help_text="a domain name; *.dev.lan for every name below dev.lan; for PTR also an address"
    )
    type = models.CharField(max_length=5, choices=Type.choices)
    value = models.CharField(
        max_length=1000,
        help_text='A/AAAA: an address; CNAME/PTR: a name; MX: "10 mail.lan"; SRV: "priority weight port target";'
        ' TXT: text, or several "quoted" "strings"',
    )
    ttl = models.PositiveIntegerField(default=300)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name", "type"]
        constraints = [models.UniqueConstraint(fields=["name", "type", "value"], name="uniq_localrecord")]

    def __str__(self) -> str:
        return f"{self.name} {self.type} {self.value}"

    def clean(self) -> None:
        if self.type not in self.Type.values:
            raise ValidationError({"type": f"one of {', '.join(self.Type.values)}"})
        try:
            name = parse_owner(self.name or "", self.type)
        except RecordError as exc:
            raise ValidationError({"name": str(exc)}) from None
        self.name = name
        if self.ttl is not None and self.ttl > 604800:
            raise ValidationError({"ttl": "at most 604800 (7 days)"})
        try:
            self.value = parse_value(self.type, self.value or "")
        except RecordError as exc:
            raise ValidationError({"value": str(exc)}) from None
        if self.type == self.Type.CNAME and self.value == name:
            raise ValidationError({"value": "a CNAME cannot point at itself"})


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
    # The client IPs the engine's rate limiter is refusing right now, for the clients page.
    rate_limited = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "engine statuses"

    def __str__(self) -> str:
        return self.name


# --- Clients and groups ------------------------------------------------------------------
#
# A client is in exactly one group, so one policy decides each query and the log can
# say which. A list, allow entry or rule is shared by any number of groups instead; one
# with no groups applies to every group, so data from before groups existed, and a
# network with only the default group, behave as before.


class ClientGroup(models.Model):
    """A policy: which lists, allow entries and rules apply, blocking on/off, upstreams."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=500, blank=True)
    blocking_enabled = models.BooleanField(default=True, help_text="off: this group's queries are never blocked")
    upstreams = models.CharField(
        max_length=1000,
        blank=True,
        help_text="host[:port], comma-separated, as GLORYHOLE_UPSTREAMS; empty: the engine's upstreams",
    )
    rate_limit_exempt = models.BooleanField(default=False, help_text="never rate-limited (e.g. a forwarding router)")
    # Exactly one row, created by migration 0005 and never deleted (see signals.py).
    is_default = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="uniq_default_clientgroup"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.upstreams = self.upstreams.strip()
        if self.upstreams:
            try:
                parse_upstreams(self.upstreams, setting="upstreams")
            except ConfigError as exc:
                raise ValidationError({"upstreams": str(exc)}) from None


def default_group() -> ClientGroup:
    """The default group: created by migration 0005 and undeletable; made again if a flushed
    database (a transactional test) has lost it."""
    group, _ = ClientGroup.objects.get_or_create(is_default=True, defaults={"name": "Default"})
    return group


def default_group_id() -> int:
    """The default group's pk: where a client goes when its group is deleted."""
    return default_group().pk


def normalize_mac(value: str) -> str | None:
    """`AA-BB-CC-DD-EE-FF`, `aabb.ccdd.eeff`, `aa:bb:…` -> `aa:bb:cc:dd:ee:ff`; None if not a MAC."""
    digits = "".join(ch for ch in value.strip().lower() if ch not in ":-. ")
    if len(digits) != 12 or any(ch not in "0123456789abcdef" for ch in digits):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


class Client(models.Model):
    """A device the user named or assigned, recognised by one IP, one network or one MAC."""

    name = models.CharField(max_length=100)
    ip = models.GenericIPAddressField(null=True, blank=True, unique=True)
    cidr = models.CharField(max_length=50, null=True, blank=True, unique=True, help_text="a network: 192.168.1.0/24")
    mac = models.CharField(max_length=17, null=True, blank=True, unique=True, help_text="aa:bb:cc:dd:ee:ff")
    # SET, not PROTECT: deleting a group moves its clients to the default group, the
    # policy they would get if they had never been assigned, instead of refusing the delete.
    group = models.ForeignKey(ClientGroup, on_delete=models.SET(default_group_id), related_name="clients")
    comment = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(ip__isnull=False, cidr__isnull=True, mac__isnull=True)
                    | models.Q(ip__isnull=True, cidr__isnull=False, mac__isnull=True)
                    | models.Q(ip__isnull=True, cidr__isnull=True, mac__isnull=False)
                ),
                name="client_one_identifier",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.identifier})"

    def save(self, *args, **kwargs) -> None:
        if self.group_id is None:
            self.group_id = default_group_id()
        super().save(*args, **kwargs)

    @property
    def identifier(self) -> str:
        return self.ip or self.cidr or self.mac or ""

    def clean(self) -> None:
        # Empty form fields arrive as "": store NULL so the unique constraints ignore them.
        self.ip = self.ip or None
        self.cidr = (self.cidr or "").strip() or None
        self.mac = (self.mac or "").strip() or None
        given = [f for f in ("ip", "cidr", "mac") if getattr(self, f)]
        if len(given) != 1:
            raise ValidationError("Give exactly one of IP address, network (CIDR) or MAC address.")
        if self.cidr:
            try:
                self.cidr = str(ipaddress.ip_network(self.cidr, strict=False))
            except ValueError:
                raise ValidationError({"cidr": f"{self.cidr!r} is not a network such as 192.168.1.0/24"}) from None
        if self.mac:
            mac = normalize_mac(self.mac)
            if mac is None:
                raise ValidationError({"mac": f"{self.mac!r} is not a MAC address such as aa:bb:cc:dd:ee:ff"})
            self.mac = mac


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # bit i of the mask: date.weekday() == i


class GroupSchedule(models.Model):
    """While the window is open, the list applies to the group, on top of its always-on lists.

    Times are in the engine's time zone (settings.TIME_ZONE). An end before the start
    runs across midnight (21:00-07:00): the window opens on the days ticked and closes
    the next morning.
    """

    group = models.ForeignKey(ClientGroup, on_delete=models.CASCADE, related_name="schedules")
    blocklist = models.ForeignKey(Blocklist, on_delete=models.CASCADE, related_name="schedules")
    weekdays = models.PositiveSmallIntegerField(
        default=0b1111111, help_text="bit mask, Monday = 1, Tuesday = 2, ... Sunday = 64; 127: every day"
    )
    start = models.TimeField()
    end = models.TimeField(help_text="before the start: the window ends the next day")
    enabled = models.BooleanField(default=True)
    comment = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["group", "start"]

    def __str__(self) -> str:
        days = ",".join(d for i, d in enumerate(WEEKDAYS) if self.weekdays >> i & 1)
        return f"{self.group}: {self.blocklist} {days} {self.start:%H:%M}-{self.end:%H:%M}"

    def clean(self) -> None:
        if not 1 <= self.weekdays <= 0b1111111:
            raise ValidationError({"weekdays": "tick at least one day"})
        if self.start is not None and self.start == self.end:
            raise ValidationError({"end": "the window would be empty: give an end different from the start"})


# --- Conditional forwarding -------------------------------------------------------------


class ForwardingRule(models.Model):
    """Names at and below `domain` go to `upstreams` instead of the default (or a group's) upstreams.

    The most specific enabled rule wins (`corp.lan` over `lan`); a rule applies to
    every client group. A rule for a private reverse zone (`168.192.in-addr.arpa`) or a
    single-label suffix (`lan`) also lifts the local NXDOMAIN those names get without
    one (dnsengine.core.special).
    """

    domain = models.CharField(
        max_length=253, unique=True, help_text="a domain suffix: lan, home.arpa, 168.192.in-addr.arpa, corp.example.com"
    )
    # blank=True only so that clean() refuses an empty list in the environment parser's words.
    upstreams = models.CharField(
        max_length=1000,
        blank=True,
        help_text="host[:port], comma-separated, as GLORYHOLE_UPSTREAMS; several: tried in this order",
    )
    enabled = models.BooleanField(default=True)
    comment = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return f"{self.domain} -> {self.upstreams}"

    def clean(self) -> None:
        errors = {}
        domain = normalize_domain(self.domain or "", require_dot=False)
        if domain is None:
            errors["domain"] = f"{self.domain!r} is not a valid domain name"
        elif domain.rpartition(".")[2] in ("localhost", "invalid"):
            # Answered on the box whatever the upstreams say (RFC 6761): a rule would never apply.
            errors["domain"] = f"{domain!r} never leaves this box (RFC 6761): it cannot be forwarded"
        else:
            self.domain = domain
        try:
            parsed = parse_upstreams(self.upstreams or "", setting="upstreams")
        except ConfigError as exc:
            errors["upstreams"] = str(exc)
        else:
            self.upstreams = ", ".join(u.text for u in parsed)
        if errors:
            raise ValidationError(errors)
