"""Reads for the web pages: block lists, the "is this domain blocked?" check, engine status, guard rails,
clients and groups, local records."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet, Sum
from django.utils import timezone

from dnsengine.core.groups import GroupAssignment, Window, group_suffix
from dnsengine.core.localrecords import HOSTS_MAX_BYTES, parse_hosts_records
from dnsengine.core.names import normalize_domain
from dnsengine.core.rules import Matcher, compile_rule
from dnsengine.guardrails import DOMAIN, Verdict, covers_pattern, domain_refusal, domain_verdict, pattern_verdict
from dnsengine.models import (
    WEEKDAYS,
    AllowedDomain,
    BlockedDomain,
    Blocklist,
    BlockRule,
    Client,
    ClientGroup,
    EngineStatus,
    GroupSchedule,
    LocalRecord,
)
from querylog.selectors import client_activity, client_last_queries
from querylog.traffic import recent_traffic_of_domain, recent_traffic_of_rule

# An engine writes its heartbeat every ~2 s; several missed ones mean it is gone.
ENGINE_DOWN_AFTER_SECONDS = 10.0


def blocklist_names_enabled() -> int:
    """Names on the enabled lists, from each list's stored count: a name on two lists counts twice."""
    return Blocklist.objects.filter(enabled=True).aggregate(n=Sum("domain_count"))["n"] or 0


def blocklist_list() -> QuerySet[Blocklist]:
    return Blocklist.objects.order_by("name")


def _suffixes(name: str) -> list[str]:
    """example.ads.test -> [example.ads.test, ads.test, test]: the names a list entry can block it by."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


@dataclass(slots=True)
class ListMatch:
    list_name: str
    entry: str  # the list's entry that covers the name (the name itself or a parent)
    list_enabled: bool
    in_group: bool = True  # the list applies to the group checked for (now, with its time windows)


@dataclass(slots=True)
class DomainCheck:
    """What the engine would decide for one name, and every rule that has a say in it."""

    name: str
    action: str  # "allow" | "block" | "none"
    decided_by: str  # "list:NAME", "regex:...", "allow:...", "" when forwarded as usual
    list_matches: list[ListMatch] = field(default_factory=list)
    rule_matches: list[str] = field(default_factory=list)
    allow_matches: list[str] = field(default_factory=list)
    group: str = ""  # the client group checked for
    blocking_enabled: bool = True  # False: the group never blocks

    @property
    def allow_wins(self) -> bool:
        """The allowlist overrides at least one block that would otherwise apply."""
        blocked = any(m.list_enabled and m.in_group for m in self.list_matches) or bool(self.rule_matches)
        return self.action == "allow" and blocked


def client_group_of(ip: str) -> ClientGroup:
    """The group the engine puts a client address in (exact IP, then the longest network), else the default.

    The web cannot see the engine's neighbour table, so clients known by MAC only get the default group here.
    """
    by_ip = dict(Client.objects.filter(ip__isnull=False).values_list("ip", "group_id"))
    by_cidr = list(Client.objects.filter(cidr__isnull=False).values_list("cidr", "group_id"))
    default = ClientGroup.objects.get(is_default=True)
    try:
        group_id = GroupAssignment(by_ip=by_ip, by_cidr=by_cidr, default=default.pk).lookup(ip)
    except ValueError:
        return default
    return ClientGroup.objects.filter(pk=group_id).first() or default


def _lists_of_group(group: ClientGroup) -> set[int]:
    """The enabled lists that apply to `group` now: its own, everyone's, and those whose window is open."""
    memberships: dict[int, set[int]] = {}
    for list_id, group_id in Blocklist.groups.through.objects.values_list("blocklist_id", "clientgroup_id"):
        memberships.setdefault(list_id, set()).add(group_id)
    schedules = list(GroupSchedule.objects.filter(enabled=True).values_list("group_id", "blocklist_id", "weekdays",
                                                                             "start", "end"))  # fmt: skip
    scheduled = {list_id for _, list_id, *_ in schedules}
    now = timezone.localtime()
    out = set()
    for list_id in Blocklist.objects.filter(enabled=True).values_list("pk", flat=True):
        owners = memberships.get(list_id)
        if (group.pk in owners) if owners else list_id not in scheduled:
            out.add(list_id)
    for group_id, list_id, weekdays, start, end in schedules:
        seconds = (start.hour * 3600 + start.minute * 60 + start.second, end.hour * 3600 + end.minute * 60 + end.second)
        if group_id == group.pk and Window(0, weekdays, *seconds).is_open(now):
            out.add(list_id)
    return out


def domain_check(name: str, *, client: str = "", group: ClientGroup | None = None) -> DomainCheck:
    """Check `name` (already normalised) against the database as the engine would, for a client or group.

    Only the rows that can concern this name are read (the name and its parents
    in the lists and the allowlist, plus the rules), then the engine's own
    Matcher decides, so this box and the engine cannot disagree on precedence.
    Without a client or group, the default group's policy is checked.
    """
    if group is None:
        group = client_group_of(client) if client else ClientGroup.objects.filter(is_default=True).first()
    if group is None:  # no default group: a database the migrations have not reached
        group = ClientGroup(name="Default", is_default=True)
    suffix = group_suffix(group.name, ClientGroup.objects.count() > 1)
    group_lists = _lists_of_group(group)

    def applies(owners: set[int]) -> bool:
        return not owners or group.pk in owners

    suffixes = _suffixes(name)
    rows = (
        BlockedDomain.objects.filter(domain__in=suffixes)
        .select_related("blocklist")
        .order_by("blocklist__name", "domain")
    )
    list_matches = [
        ListMatch(r.blocklist.name, r.domain, r.blocklist.enabled, r.blocklist_id in group_lists) for r in rows
    ]
    rule_groups: dict[int, set[int]] = {}
    for rule_id, group_id in BlockRule.groups.through.objects.values_list("blockrule_id", "clientgroup_id"):
        rule_groups.setdefault(rule_id, set()).add(group_id)
    allow_groups: dict[int, set[int]] = {}
    for allow_id, group_id in AllowedDomain.groups.through.objects.values_list("alloweddomain_id", "clientgroup_id"):
        allow_groups.setdefault(allow_id, set()).add(group_id)

    # The same rules the engine loads (loader.snapshot_load): hand-made ones, and
    # those of enabled regex lists, labelled as the query log labels them.
    rule_matches: list[str] = []
    enabled_rules: list[tuple[str, str]] = []
    list_rules: list[tuple[str, str, str]] = []
    rules = BlockRule.objects.filter(enabled=True).filter(Q(blocklist__isnull=True) | Q(blocklist__enabled=True))
    for rule_id, kind, pattern, list_id, list_name in rules.values_list("pk", "kind", "pattern", "blocklist_id",
                                                                        "blocklist__name"):  # fmt: skip
        if (list_id is None and not applies(rule_groups.get(rule_id, set()))) or (
            list_id is not None and list_id not in group_lists
        ):
            continue
        try:
            regex = compile_rule(kind, pattern)
        except ValueError:
            continue
        if list_name is None:
            enabled_rules.append((kind, pattern))
        else:
            list_rules.append((list_name, kind, pattern))
        if regex.search(name):
            label = f"{kind}:{pattern}" if list_name is None else f"list:{list_name} {kind}:{pattern}"
            rule_matches.append(label + suffix)

    allowed_rows = [
        (domain, subs)
        for pk, domain, subs in AllowedDomain.objects.filter(enabled=True, domain__in=suffixes).values_list(
            "pk", "domain", "include_subdomains"
        )
        if applies(allow_groups.get(pk, set()))
    ]
    allow_matches = [
        (f"allow:*.{domain}" if subs else f"allow:{domain}") + suffix
        for domain, subs in allowed_rows
        if domain == name or subs
    ]

    by_list: dict[str, list[str]] = {}
    for m in list_matches:
        if m.list_enabled and m.in_group:
            by_list.setdefault(m.list_name, []).append(m.entry)
    matcher = Matcher.build(
        lists=sorted(by_list.items()), rules=enabled_rules, allowed=allowed_rows, list_rules=list_rules
    )
    decision = matcher.match(name) if group.blocking_enabled else None
    if decision is not None and suffix:
        decision = dataclasses.replace(decision, rule=decision.rule + suffix)
    return DomainCheck(
        name=name,
        action=decision.action if decision else "none",
        decided_by=decision.rule if decision else "",
        list_matches=list_matches,
        rule_matches=rule_matches,
        allow_matches=allow_matches,
        group=group.name,
        blocking_enabled=group.blocking_enabled,
    )


@dataclass(slots=True)
class EngineView:
    """One EngineStatus row plus what the page derives from it.

    An engine run with `rundns --processes N` beats as N rows "<name>/<K>"; its view's
    row is their sum (worst heartbeat, oldest config generation) and `processes` holds
    one view per worker.
    """

    row: EngineStatus
    heartbeat_age: float
    down: bool
    fill_pct: float
    drop_pct: float  # share of all log entries that were dropped
    metrics_url: str
    processes: list[EngineView] = field(default_factory=list)

    def as_json(self) -> dict:
        r = self.row
        out = {
            "name": r.name,
            "hostname": r.hostname,
            "pid": r.pid,
            "started_at": r.started_at.isoformat(),
            "heartbeat_at": r.heartbeat_at.isoformat(),
            "heartbeat_age": round(self.heartbeat_age, 1),
            "down": self.down,
            "queries_total": r.queries_total,
            "qps": round(r.qps, 2),
            "buffer_size": r.buffer_size,
            "buffer_capacity": r.buffer_capacity,
            "fill_pct": round(self.fill_pct, 1),
            "drops": r.drops,
            "drop_pct": round(self.drop_pct, 3),
            "written": r.written,
            "write_rate": round(r.write_rate, 2),
            "write_errors": r.write_errors,
            "workers": r.workers,
            "mode": r.mode,
            "generation": r.generation,
            "threads": r.threads,
            "metrics_url": self.metrics_url,
            "processes": len(self.processes) or 1,
        }
        if self.processes:
            out["process_list"] = [p.as_json() for p in self.processes]
        return out


def _engine_view(row: EngineStatus, now: datetime, metrics_url: str) -> EngineView:
    age = max(0.0, (now - row.heartbeat_at).total_seconds())
    fill = 100.0 * row.buffer_size / row.buffer_capacity if row.buffer_capacity else 0.0
    handled = row.written + row.drops
    return EngineView(
        row=row,
        heartbeat_age=age,
        down=age > ENGINE_DOWN_AFTER_SECONDS,
        fill_pct=min(fill, 100.0),
        drop_pct=100.0 * row.drops / handled if handled else 0.0,
        metrics_url=metrics_url,
    )


_SUMMED = ("queries_total", "qps", "buffer_size", "buffer_capacity", "drops", "written", "write_errors",
           "write_rate", "workers", "threads")  # fmt: skip


def engine_processes_sum(name: str, rows: list[EngineStatus]) -> EngineStatus:
    """The rows of one engine's worker processes as one (unsaved) row: counts summed, the worst heartbeat."""
    first = rows[0]
    total = EngineStatus(
        name=name,
        hostname=first.hostname,
        pid=first.pid,
        started_at=min(r.started_at for r in rows),
        heartbeat_at=min(r.heartbeat_at for r in rows),
        mode=first.mode,
        generation=min(r.generation for r in rows),
        rate_limited=sorted({ip for r in rows for ip in r.rate_limited or ()}),
    )
    for attr in _SUMMED:
        setattr(total, attr, sum(getattr(r, attr) for r in rows))
    return total


def _worker_of(name: str) -> tuple[str, int] | None:
    """("engine", K) for a worker's row "engine/K" (rundns --processes), else None."""
    base, slash, index = name.rpartition("/")
    return (base, int(index)) if slash and base and index.isdigit() else None


def engine_status_list(request_host: str, metrics_port: int, now: datetime | None = None) -> list[EngineView]:
    """Every engine that ever sent a heartbeat, with age, fill level and a link to its /metrics.

    The engine on this machine is linked through the host name the browser used
    (the engine's own hostname may not resolve for the browser); others by theirs.
    The worker processes of one engine are one view (EngineView.processes); worker K
    serves its metrics on metrics_port + K.
    """
    now = now or timezone.now()
    here = socket.gethostname()
    browser_host = request_host.rsplit(":", 1)[0] if not request_host.endswith("]") else request_host

    def metrics_url(row: EngineStatus, offset: int = 0) -> str:
        host = browser_host if row.hostname in ("", here) else row.hostname
        return f"http://{host}:{metrics_port + offset}/metrics" if metrics_port else ""

    views: list[EngineView] = []
    groups: dict[str, list[tuple[int, EngineStatus]]] = {}
    for row in EngineStatus.objects.order_by("name"):
        worker = _worker_of(row.name)
        if worker is None:
            views.append(_engine_view(row, now, metrics_url(row)))
        else:
            groups.setdefault(worker[0], []).append((worker[1], row))
    for name, members in groups.items():
        members.sort(key=lambda m: m[0])
        rows = [row for _, row in members]
        view = _engine_view(engine_processes_sum(name, rows), now, metrics_url(rows[0]))
        view.processes = [_engine_view(row, now, metrics_url(row, k)) for k, row in members]
        view.down = any(p.down for p in view.processes)
        views.append(view)
    views.sort(key=lambda v: v.row.name)
    return views


# --- Guard rails on blocking ----------------------------------------------------------


def block_confirm_share() -> float:
    return settings.GLORYHOLE_BLOCK_CONFIRM_SHARE


def block_verdict(kind: str, value: str, *, now: datetime | None = None) -> Verdict:
    """The guard rails' verdict on a block rule a person wants to add, with the last 24 h's figures.

    kind: guardrails.DOMAIN (value as typed: it is refused or normalised here),
    WILDCARD or REGEX. Refused rules are not measured.
    """
    if kind == DOMAIN:
        refused = domain_refusal(value)
        name = normalize_domain(value, require_dot=False) if not refused else None
        if name is None:
            refused = refused or f"{value!r} is not a valid domain name"
            return Verdict(DOMAIN, value.strip(), refused, (), f"blocks {value.strip()}", None)
        verdict = domain_verdict(name, None, block_confirm_share())
        if verdict.refused:
            return verdict
        return domain_verdict(name, recent_traffic_of_domain(name, now), block_confirm_share())
    verdict = pattern_verdict(kind, value, None, block_confirm_share())
    if verdict.refused:
        return verdict
    covers = covers_pattern(kind, verdict.target)
    return pattern_verdict(kind, value, recent_traffic_of_rule(covers, now), block_confirm_share())


# --- Clients and groups ------------------------------------------------------------------

CLIENTS_WINDOW = timedelta(hours=24)


@dataclass(slots=True)
class ClientRow:
    """One line of the clients page: a client seen in the window, or a configured Client row, or both."""

    ip: str  # empty for a Client row recognised by its network or MAC
    identifier: str  # what to show: the IP, the CIDR or the MAC
    name: str
    group_name: str
    group_id: int | None
    queries: int = 0
    blocked: int = 0
    last_seen: datetime | None = None
    rate_limited: bool = False
    client: Client | None = None  # the Client row, if one names or assigns it

    @property
    def blocked_pct(self) -> float:
        return 100.0 * self.blocked / self.queries if self.queries else 0.0


def rate_limited_clients(now: datetime | None = None) -> set[str]:
    """The IPs any live engine's rate limiter refuses now (from the heartbeat rows)."""
    now = now or timezone.now()
    fresh = now - timedelta(seconds=ENGINE_DOWN_AFTER_SECONDS)
    limited: set[str] = set()
    for ips in EngineStatus.objects.filter(heartbeat_at__gte=fresh).values_list("rate_limited", flat=True):
        limited.update(str(ip) for ip in ips or ())
    return limited


def _cidr_group(ip: str, networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Client]]) -> Client | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    best = None
    for network, client in networks:
        if address.version == network.version and address in network:
            if best is None or network.prefixlen > best[0].prefixlen:
                best = (network, client)
    return best[1] if best else None


def client_rows(now: datetime | None = None) -> list[ClientRow]:
    """Every client seen in the last 24 hours (busiest first, from the rollups), then every
    configured Client row not seen. Names and last-seen times come later, per page
    (client_rows_complete), so the page reads QueryLog for the rows it shows only.
    """
    now = now or timezone.now()
    groups = {g.pk: g for g in ClientGroup.objects.all()}
    default = next((g for g in groups.values() if g.is_default), None)
    configured = list(Client.objects.all())
    by_ip = {c.ip: c for c in configured if c.ip}
    networks = []
    for c in configured:
        if c.cidr:
            try:
                networks.append((ipaddress.ip_network(c.cidr, strict=False), c))
            except ValueError:
                continue
    limited = rate_limited_clients(now)
    rows: list[ClientRow] = []
    seen: set[str] = set()
    for activity in client_activity(now - CLIENTS_WINDOW):
        seen.add(activity.client)
        own = by_ip.get(activity.client)
        assigned = own or _cidr_group(activity.client, networks)
        group = groups.get(assigned.group_id) if assigned else default
        rows.append(
            ClientRow(
                ip=activity.client,
                identifier=activity.client,
                name=own.name if own else "",
                group_name=group.name if group else "",
                group_id=group.pk if group else None,
                queries=activity.queries,
                blocked=activity.blocked,
                last_seen=activity.last_hour,
                rate_limited=activity.client in limited,
                client=own,
            )
        )
    for c in configured:
        if c.ip and c.ip in seen:
            continue
        group = groups.get(c.group_id)
        rows.append(
            ClientRow(
                ip=c.ip or "",
                identifier=c.identifier,
                name=c.name,
                group_name=group.name if group else "",
                group_id=c.group_id,
                rate_limited=bool(c.ip) and c.ip in limited,
                client=c,
            )
        )
    return rows


def client_rows_complete(rows: list[ClientRow]) -> None:
    """Fill in, for the rows of one page, the last name the log recorded (for unnamed clients),
    the exact time of the last query, and the group the engine decided it under when no
    Client row says (a MAC assignment the web cannot see). One indexed query.
    """
    seen = {r.ip: r for r in rows if r.ip and r.queries}
    last = client_last_queries({ip: r.last_seen for ip, r in seen.items()})
    for ip, row in seen.items():
        query = last.get(ip)
        if query is None:
            continue
        if not row.name:
            row.name = query.name
        if query.at is not None:
            row.last_seen = query.at
        if row.client is None and query.group:
            row.group_name = query.group


def weekdays_text(mask: int) -> str:
    """A GroupSchedule's day mask for people: "every day", "Mon-Fri", "Sat, Sun"."""
    days = [d.capitalize() for i, d in enumerate(WEEKDAYS) if mask >> i & 1]
    if len(days) == len(WEEKDAYS):
        return "every day"
    if mask == 0b0011111:
        return "Mon-Fri"
    return ", ".join(days)


MEMBERSHIP_MODELS = {"blocklists": Blocklist, "allowed_domains": AllowedDomain, "block_rules": BlockRule}
MEMBERSHIP_TITLES = (
    ("blocklists", "Blocklists"),
    ("allowed_domains", "Allowlist entries"),
    ("block_rules", "Block rules (added by hand)"),
)


def membership_candidates(kind: str) -> QuerySet:
    """The rows a group's checkboxes offer: every list and allow entry, the rules added by hand.

    A regex list's rules follow their list's groups, so they are not offered one by one.
    """
    model = MEMBERSHIP_MODELS[kind]
    rows = model.objects.prefetch_related("groups")
    return rows.filter(blocklist__isnull=True) if model is BlockRule else rows


def group_memberships(group: ClientGroup) -> list[dict]:
    """Per kind (lists, allow entries, rules): each row, whether it applies to `group`, and
    whether it applies to every group (it has none)."""
    memberships = []
    for kind, title in MEMBERSHIP_TITLES:
        items = []
        for item in membership_candidates(kind):
            groups = [g.pk for g in item.groups.all()]
            items.append({"item": item, "every_group": not groups, "applies": not groups or group.pk in groups})
        memberships.append({"kind": kind, "title": title, "items": items})
    return memberships


def client_group_list() -> QuerySet[ClientGroup]:
    """The groups with what the groups page shows of each; the default group first."""
    return ClientGroup.objects.annotate(client_count=Count("clients", distinct=True)).prefetch_related(
        Prefetch("schedules", queryset=GroupSchedule.objects.select_related("blocklist"))
    )


def local_record_list(search: str = "") -> QuerySet[LocalRecord]:
    """The local records, filtered by a piece of their name or value."""
    records = LocalRecord.objects.order_by("name", "type", "value")
    search = search.strip().lower()
    if search:
        records = records.filter(Q(name__icontains=search) | Q(value__icontains=search))
    return records


@dataclass(frozen=True, slots=True)
class HostsFileView:
    path: str
    rows: tuple = ()  # (name, type, address, ttl, line number)
    bad_lines: tuple[int, ...] = ()
    error: str = ""


def local_hosts_file_view(search: str = "", limit: int = 500) -> HostsFileView | None:
    """The records of GLORYHOLE_LOCAL_HOSTS_FILE as the engine reads it, for showing; None when unset."""
    path = settings.GLORYHOLE_LOCAL_HOSTS_FILE
    if not path:
        return None
    try:
        if os.stat(path).st_size > HOSTS_MAX_BYTES:
            return HostsFileView(path, error=f"larger than {HOSTS_MAX_BYTES} bytes: not read")
        with open(path, "rb") as handle:
            text = handle.read(HOSTS_MAX_BYTES).decode("utf-8", errors="replace")
    except OSError as exc:
        return HostsFileView(path, error=exc.strerror or str(exc))
    parsed = parse_hosts_records(text)
    search = search.strip().lower()
    rows = [row for row in parsed.rows if not search or search in row[0] or search in row[2]]
    return HostsFileView(path, tuple(rows[:limit]), parsed.bad_lines)


# --- The domains page ----------------------------------------------------------------------


@dataclass(slots=True)
class DomainEntryRow:
    """One hand-made entry of the domains page: an allow entry, a rule, or a name of the manual list."""

    ref: str  # allow-3, rule-5, listed-7
    action: str  # "allow" | "block"
    kind: str  # "exact" | "subdomains" | "wildcard" | "regex"
    value: str
    enabled: bool
    comment: str = ""
    created: datetime | None = None
    changed: datetime | None = None
    changed_by: str = ""
    groups: list[str] = field(default_factory=list)
    toggleable: bool = True

    @property
    def kind_label(self) -> str:
        return DOMAIN_ENTRY_KIND_LABELS[self.kind]


DOMAIN_ENTRY_KIND_LABELS = {
    "exact": "exact name",
    "subdomains": "this name and below",
    "wildcard": "wildcard",
    "regex": "regex",
}


def domain_entries(
    *, manual_list: str, query: str = "", action: str = "", kind: str = "", enabled: str = ""
) -> list[DomainEntryRow]:
    """Every hand-made entry, filtered: `query` a substring of the name/pattern or comment, `action`
    allow/block, `kind` one of DOMAIN_ENTRY_KIND_LABELS, `enabled` "on"/"off". Newest change first.

    Hand-made entries are few (people type them), so they are merged in Python; the list named
    `manual_list` (services.domains.MANUAL_LIST) holds what "block this domain" added.
    """
    rows: list[DomainEntryRow] = []
    text = query.strip().lower()
    if action in ("", "allow"):
        allowed = AllowedDomain.objects.prefetch_related("groups")
        if text:
            allowed = allowed.filter(Q(domain__icontains=text) | Q(comment__icontains=text))
        for a in allowed:
            rows.append(DomainEntryRow(
                f"allow-{a.pk}", "allow", "subdomains" if a.include_subdomains else "exact", a.domain, a.enabled,
                a.comment, a.created, a.changed, a.changed_by, [g.name for g in a.groups.all()],
            ))  # fmt: skip
    if action in ("", "block"):
        rules = BlockRule.objects.filter(blocklist__isnull=True).prefetch_related("groups")
        if text:
            rules = rules.filter(Q(pattern__icontains=text) | Q(comment__icontains=text))
        for r in rules:
            exact = r.kind == BlockRule.Kind.WILDCARD and not any(c in r.pattern for c in "*?")
            rows.append(DomainEntryRow(
                f"rule-{r.pk}", "block", "exact" if exact else r.kind, r.pattern, r.enabled, r.comment,
                r.created, r.changed, r.changed_by, [g.name for g in r.groups.all()],
            ))  # fmt: skip
        manual = Blocklist.objects.filter(name=manual_list).first()
        if manual is not None:
            listed = BlockedDomain.objects.filter(blocklist=manual)
            if text:
                listed = listed.filter(domain__icontains=text)
            for b in listed[:5000]:
                rows.append(DomainEntryRow(
                    f"listed-{b.pk}", "block", "subdomains", b.domain, manual.enabled,
                    f'on the list "{manual_list}"', toggleable=False,
                ))  # fmt: skip
    if kind:
        rows = [r for r in rows if r.kind == kind]
    if enabled in ("on", "off"):
        rows = [r for r in rows if r.enabled == (enabled == "on")]
    epoch = datetime.min.replace(tzinfo=timezone.get_current_timezone())
    rows.sort(key=lambda r: (r.changed or r.created or epoch, r.ref), reverse=True)
    return rows
