"""The plan of an import (what another blocker's files ask for) and the one step that writes it.

A reader (`pihole`, `adguard`) turns files into a `Plan` of plain items and counts
what it could not use. `plan_apply` checks each item through the models' clean()
and the guard rails, looks up what already exists, and writes only what is new,
in one transaction. Nothing existing is changed or deleted, so a second run
creates nothing ("0 created, N unchanged").

Rows are written with bulk_create, which sends no signals: the config generation
is bumped once at the end, so the running engines rebuild once, not once per row.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from dnsengine.core.names import normalize_domain
from dnsengine.core.options import ConfigError, parse_upstreams
from dnsengine.guardrails import domain_verdict, pattern_verdict
from dnsengine.models import (
    AllowedDomain,
    BlockedDomain,
    Blocklist,
    BlockRule,
    Client,
    ClientGroup,
    ForwardingRule,
    LocalRecord,
    default_group,
    normalize_mac,
)
from dnsengine.services.config_generation import config_generation_bump
from dnsengine.services.domains import MANUAL_LIST

logger = logging.getLogger(__name__)

# Text files (pihole.toml, setupVars.conf, AdGuardHome.yaml, ...) are a few kB; a
# Teleporter archive's gravity.db holds no list contents. Anything larger is refused
# before it is parsed, and a zip member is measured as it is read, not as it claims.
MAX_TEXT_BYTES = 16 * 1024 * 1024
MAX_DATABASE_BYTES = 256 * 1024 * 1024
MAX_ARCHIVE_MEMBERS = 10_000

# The group name a reader uses for "our default group", whatever it is called here.
DEFAULT_GROUP = ""

# Blocking a whole TLD or public suffix needs a person's confirmation in the web UI;
# an import has nobody to ask, so such entries are skipped and counted.
_NO_SHARE_LIMIT = 101.0


class ImportFileError(Exception):
    """A file that cannot be imported: its message is one line for the person running the import."""


def read_limited(path: Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of `path`, refusing a file over `limit` before reading it whole."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ImportFileError(f"{path.name} is larger than {limit:,} bytes: not a configuration file")
    return data


def decode_text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError(f"{name} is not UTF-8 text") from None


# --- The plan -------------------------------------------------------------------------


@dataclass(slots=True)
class Subscription:
    name: str
    url: str
    enabled: bool = True
    groups: tuple[str, ...] = ()  # group names; DEFAULT_GROUP for ours; empty: every group


@dataclass(slots=True)
class Allow:
    domain: str
    include_subdomains: bool = False
    enabled: bool = True
    comment: str = ""
    groups: tuple[str, ...] = ()


@dataclass(slots=True)
class Deny:
    domain: str  # goes on the manual list, which blocks the name and every name below it


@dataclass(slots=True)
class Rule:
    kind: str  # BlockRule.Kind
    pattern: str
    enabled: bool = True
    comment: str = ""
    groups: tuple[str, ...] = ()


@dataclass(slots=True)
class Record:
    name: str
    type: str
    value: str
    ttl: int = 300


@dataclass(slots=True)
class Group:
    name: str
    description: str = ""


@dataclass(slots=True)
class ClientEntry:
    name: str
    identifier: str  # an IP address, a network or a MAC address, as the other program wrote it
    group: str = DEFAULT_GROUP


@dataclass(slots=True)
class Forward:
    domain: str
    upstream: str  # host[:port] in GLORYHOLE_UPSTREAMS syntax


@dataclass
class Plan:
    """What the other program's files ask for, before anything is checked against the database."""

    source: str
    groups: list[Group] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    allowed: list[Allow] = field(default_factory=list)
    denied: list[Deny] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    clients: list[ClientEntry] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    upstreams: list[str] = field(default_factory=list)  # host[:port], in order
    skipped: Counter[str] = field(default_factory=Counter)  # why -> how many entries
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] += count

    def add_upstream(self, text: str, *, origin: str = "upstream") -> None:
        """Keep `text` (host[:port]) if GLORYHOLE_UPSTREAMS would accept it, else count it."""
        try:
            parse_upstreams(text, setting=origin)
        except ConfigError:
            self.skip(f"{origin} that is not an IP address[:port] (DoH, DoT, a host name): not converted")
            self.notes.append(f"upstream not converted: {text}")
            return
        if text not in self.upstreams:
            self.upstreams.append(text)


def host_port(host: str, port: int | str | None = None) -> str:
    """'9.9.9.9' / '2620:fe::fe', port -> GLORYHOLE_UPSTREAMS syntax ('9.9.9.9:5353', '[2620:fe::fe]:53')."""
    if port in (None, "", 53, "53"):
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- Applying it ----------------------------------------------------------------------


@dataclass
class Outcome:
    created: Counter[str] = field(default_factory=Counter)  # kind -> rows (to be) created
    unchanged: Counter[str] = field(default_factory=Counter)  # kind -> rows already there
    skipped: Counter[str] = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)  # one per row created (or that a dry run would create)
    upstreams: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        created, unchanged, skipped = (sum(c.values()) for c in (self.created, self.unchanged, self.skipped))
        return f"{created} created, {unchanged} unchanged, {skipped} skipped"


def _first_error(exc: ValidationError) -> str:
    messages = exc.messages
    return messages[0] if messages else "invalid"


class _Applier:
    """Turns a plan into new rows; `dry_run` decides only whether they are written."""

    def __init__(self, plan: Plan, *, dry_run: bool) -> None:
        self.plan = plan
        self.dry_run = dry_run
        self.out = Outcome(skipped=Counter(plan.skipped), notes=list(plan.notes), upstreams=list(plan.upstreams))
        self.groups: dict[str, ClientGroup] = {}
        self.wrote = False

    def new(self, kind: str, line: str) -> None:
        self.out.created[kind] += 1
        self.out.lines.append(f"+ {kind:<12} {line}")

    def same(self, kind: str) -> None:
        self.out.unchanged[kind] += 1

    def save(self, model, rows: list) -> list:
        if rows and not self.dry_run:
            rows = model.objects.bulk_create(rows)
            self.wrote = True
        return rows

    def group_ids(self, names: tuple[str, ...]) -> list[int]:
        return [g.pk for g in (self.groups.get(n) for n in names) if g is not None and g.pk is not None]

    def save_with_groups(self, model, through, owner_field: str, new: list[tuple[object, tuple[str, ...]]]) -> None:
        """bulk_create `new` rows, then their group memberships (none: every group)."""
        saved = self.save(model, [row for row, _ in new])
        if self.dry_run:
            return
        links = [
            through(**{owner_field: row.pk, "clientgroup_id": gid})
            for row, (_, names) in zip(saved, new, strict=True)
            for gid in self.group_ids(names)
        ]
        self.save(through, links)

    # --- each kind, in dependency order ---

    def apply_groups(self) -> None:
        self.groups[DEFAULT_GROUP] = default_group()
        existing = {g.name: g for g in ClientGroup.objects.all()}
        new = []
        for item in self.plan.groups:
            name = item.name.strip()[:100]
            if not name or name in self.groups:
                continue
            if name in existing:
                self.groups[name] = existing[name]
                self.same("group")
                continue
            group = ClientGroup(name=name, description=item.description[:500])
            try:
                group.full_clean(validate_unique=False, validate_constraints=False)
            except ValidationError as exc:
                self.out.skipped[f"invalid group: {_first_error(exc)}"] += 1
                continue
            self.groups[name] = group
            new.append(group)
            self.new("group", name)
        self.save(ClientGroup, new)

    def apply_subscriptions(self) -> None:
        by_url = {url for url in Blocklist.objects.exclude(url="").values_list("url", flat=True)}
        names = set(Blocklist.objects.values_list("name", flat=True))
        new: list[tuple[Blocklist, tuple[str, ...]]] = []
        for item in self.plan.subscriptions:
            url = item.url.strip()
            if url in by_url:
                self.same("list")
                continue
            blocklist = Blocklist(name=_unique_name(item.name or url, names), url=url, source=url, enabled=item.enabled)
            try:
                blocklist.full_clean(validate_unique=False, validate_constraints=False)
            except ValidationError as exc:
                self.out.skipped[f"list that is not an http(s) URL: {_first_error(exc)}"] += 1
                continue
            by_url.add(url)
            names.add(blocklist.name)
            new.append((blocklist, item.groups))
            state = "" if item.enabled else " (disabled)"
            self.new("list", f"{blocklist.name}: {url}{state}")
        self.save_with_groups(Blocklist, Blocklist.groups.through, "blocklist_id", new)

    def apply_allowed(self) -> None:
        existing = set(AllowedDomain.objects.values_list("domain", flat=True))
        new: list[tuple[AllowedDomain, tuple[str, ...]]] = []
        for item in self.plan.allowed:
            entry = AllowedDomain(
                domain=item.domain.strip(),
                include_subdomains=item.include_subdomains,
                enabled=item.enabled,
                comment=item.comment[:200],
            )
            try:
                entry.full_clean(validate_unique=False, validate_constraints=False)
            except ValidationError:
                self.out.skipped["allow entry that is not a valid domain name"] += 1
                continue
            if entry.domain in existing:
                self.same("allow")
                continue
            existing.add(entry.domain)
            new.append((entry, item.groups))
            below = " and below" if entry.include_subdomains else ""
            self.new("allow", f"{entry.domain}{below}{'' if entry.enabled else ' (disabled)'}")
        self.save_with_groups(AllowedDomain, AllowedDomain.groups.through, "alloweddomain_id", new)

    def apply_denied(self) -> None:
        manual = Blocklist.objects.filter(name=MANUAL_LIST).first()
        existing = (
            set(BlockedDomain.objects.filter(blocklist=manual).values_list("domain", flat=True)) if manual else set()
        )
        new: list[str] = []
        for item in self.plan.denied:
            name = normalize_domain(item.domain.strip(), require_dot=False)
            if name is None:
                self.out.skipped["block entry that is not a valid domain name"] += 1
                continue
            verdict = domain_verdict(name, None, _NO_SHARE_LIMIT)
            if verdict.refused:
                self.out.skipped["block entry the guard rails refuse (an address, localhost)"] += 1
                continue
            if verdict.confirm:
                self.out.skipped["block entry for a whole top-level domain or public suffix (guard rails)"] += 1
                continue
            if name in existing:
                self.same("block")
                continue
            existing.add(name)
            new.append(name)
            self.new("block", f"{name} and below (list {MANUAL_LIST})")
        if not new or self.dry_run:
            return
        if manual is None:
            manual = Blocklist(name=MANUAL_LIST, source="blocked from the web", format=Blocklist.Format.DOMAINS)
            self.save(Blocklist, [manual])
            manual = Blocklist.objects.get(name=MANUAL_LIST)
        self.save(BlockedDomain, [BlockedDomain(blocklist=manual, domain=d) for d in new])
        Blocklist.objects.filter(pk=manual.pk).update(
            domain_count=BlockedDomain.objects.filter(blocklist=manual).count()
        )

    def apply_rules(self) -> None:
        existing = set(BlockRule.objects.filter(blocklist__isnull=True).values_list("kind", "pattern"))
        new: list[tuple[BlockRule, tuple[str, ...]]] = []
        for item in self.plan.rules:
            rule = BlockRule(
                kind=item.kind, pattern=item.pattern.strip(), enabled=item.enabled, comment=item.comment[:200]
            )
            try:
                rule.full_clean(validate_unique=False, validate_constraints=False)
            except ValidationError:
                self.out.skipped[f"{item.kind} rule that does not compile"] += 1
                continue
            verdict = pattern_verdict(rule.kind, rule.pattern, None, _NO_SHARE_LIMIT)
            if verdict.refused or verdict.confirm:
                self.out.skipped[
                    f"{item.kind} rule that would block a whole top-level domain or more (guard rails)"
                ] += 1
                continue
            if (rule.kind, rule.pattern) in existing:
                self.same("rule")
                continue
            existing.add((rule.kind, rule.pattern))
            new.append((rule, item.groups))
            self.new("rule", f"{rule.kind} {rule.pattern}{'' if rule.enabled else ' (disabled)'}")
        self.save_with_groups(BlockRule, BlockRule.groups.through, "blockrule_id", new)

    def apply_records(self) -> None:
        # Read at run time: another change may teach LocalRecord more types.
        types = set(LocalRecord.Type.values)
        existing = set(LocalRecord.objects.values_list("name", "type", "value"))
        new = []
        for item in self.plan.records:
            kind = item.type.upper()
            if kind not in types:
                self.out.skipped[f"{kind} local record (not a type this version serves)"] += 1
                continue
            record = LocalRecord(name=item.name.strip(), type=kind, value=item.value.strip(), ttl=item.ttl)
            try:
                record.full_clean(validate_unique=False, validate_constraints=False)
            except ValidationError as exc:
                self.out.skipped[f"invalid local record: {_first_error(exc)}"] += 1
                continue
            key = (record.name, record.type, record.value)
            if key in existing:
                self.same("record")
                continue
            existing.add(key)
            new.append(record)
            self.new("record", f"{record.name} {record.type} {record.value}")
        self.save(LocalRecord, new)

    def apply_clients(self) -> None:
        new = []
        seen: set[tuple[str, str]] = set()
        for item in self.plan.clients:
            field_name, value = _client_identifier(item.identifier)
            if field_name is None:
                self.out.skipped["client known by a host name or an interface (only IP, network or MAC here)"] += 1
                continue
            group = self.groups.get(item.group) or self.groups[DEFAULT_GROUP]
            client = Client(name=(item.name.strip() or value)[:100], group=group, **{field_name: value})
            try:
                client.full_clean(validate_unique=False, validate_constraints=False, exclude=["group"])
            except ValidationError as exc:
                self.out.skipped[f"invalid client: {_first_error(exc)}"] += 1
                continue
            value = getattr(client, field_name)
            if (field_name, value) in seen or Client.objects.filter(**{field_name: value}).exists():
                self.same("client")
                continue
            seen.add((field_name, value))
            new.append(client)
            self.new("client", f"{client.name} ({value}) in group {group.name}")
        if not self.dry_run:
            for client in new:
                client.group_id = client.group.pk  # a group created above has its pk now
        self.save(Client, new)

    def apply_forwards(self) -> None:
        # Several entries for one domain (AdGuard Home lists one upstream a line) make one
        # rule with those upstreams in their order, as failover.
        by_domain: dict[str, list[str]] = {}
        for item in self.plan.forwards:
            upstreams = by_domain.setdefault(item.domain, [])
            if item.upstream not in upstreams:
                upstreams.append(item.upstream)
        new = []
        for domain, upstreams in by_domain.items():
            rule = ForwardingRule(domain=domain, upstreams=",".join(upstreams))
            try:
                rule.full_clean(validate_unique=False)
            except ValidationError as exc:
                self.out.skipped[f"invalid forwarding rule: {_first_error(exc)}"] += 1
                continue
            existing = ForwardingRule.objects.filter(domain=rule.domain).first()
            if existing is not None or any(r.domain == rule.domain for r in new):
                if existing is not None and existing.upstreams != rule.upstreams:
                    # The user's own rule stays: an import never changes what exists.
                    self.out.skipped["forwarding rule for a domain that has one with other upstreams"] += 1
                else:
                    self.same("forwarding")
                continue
            new.append(rule)
            self.new("forwarding", f"{rule.domain} -> {rule.upstreams}")
        self.save(ForwardingRule, new)


def _unique_name(wanted: str, taken: set[str]) -> str:
    base = " ".join(wanted.split())[:96] or "imported list"
    name, n = base, 2
    while name in taken:
        name, n = f"{base} {n}", n + 1
    return name


def _client_identifier(text: str) -> tuple[str | None, str]:
    """('ip' | 'cidr' | 'mac' | None, value) for a client identifier as another program wrote it."""
    text = text.strip()
    if "/" in text:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return None, text
        if network.num_addresses == 1:
            return "ip", str(network.network_address)
        return "cidr", str(network)
    try:
        return "ip", str(ipaddress.ip_address(text))
    except ValueError:
        pass
    mac = normalize_mac(text)
    return ("mac", mac) if mac else (None, text)


def plan_apply(plan: Plan, *, dry_run: bool = False) -> Outcome:
    """Check every item of `plan` and create the rows that do not exist yet, in one transaction.

    With dry_run nothing is written; the outcome says what would have been.
    Bumps the config generation once when anything was written.
    """
    applier = _Applier(plan, dry_run=dry_run)
    with transaction.atomic():
        applier.apply_groups()
        applier.apply_subscriptions()
        applier.apply_allowed()
        applier.apply_denied()
        applier.apply_rules()
        applier.apply_records()
        applier.apply_clients()
        applier.apply_forwards()
        if applier.wrote:
            config_generation_bump()
    return applier.out


__all__ = [
    "DEFAULT_GROUP",
    "Allow",
    "ClientEntry",
    "Deny",
    "Forward",
    "Group",
    "ImportFileError",
    "Outcome",
    "Plan",
    "Record",
    "Rule",
    "Subscription",
    "host_port",
    "plan_apply",
]
