"""Client groups from the database to plain values: one GroupSpec per group, and who is in which.

A list, allow entry or rule with no groups applies to every group; with groups, to
those only. The rules of a regex list follow their list. A list reached through a
group's schedule applies to that group while its window is open (and a scheduled
list with no groups is always-on for nobody: it is there for its windows) (the windows are
evaluated by dnsengine.core.groups, on the watcher's clock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import time as dtime

from dnsengine.core.groups import GroupSpec, Window, group_suffix
from dnsengine.core.options import ConfigError, parse_upstreams
from dnsengine.core.rules import compile_rule
from dnsengine.models import AllowedDomain, Blocklist, BlockRule, Client, ClientGroup, GroupSchedule

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class GroupsConfig:
    default_name: str
    # True: only the default group, blocking on, default upstreams, no windows: one
    # matcher for everyone, built exactly as before groups existed.
    simple: bool
    specs: tuple[GroupSpec, ...] = ()  # policy number = position; the default group is number 0
    by_ip: dict[str, int] = field(default_factory=dict)
    by_cidr: list[tuple[str, int]] = field(default_factory=list)
    by_mac: dict[str, int] = field(default_factory=dict)
    # The names the user gave, for the client directory.
    names_by_ip: dict[str, str] = field(default_factory=dict)
    names_by_cidr: list[tuple[str, str]] = field(default_factory=list)
    names_by_mac: dict[str, str] = field(default_factory=dict)


def _seconds(value: dtime) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


def _memberships(through, owner: str) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for owner_id, group_id in through.objects.values_list(owner, "clientgroup_id"):
        out.setdefault(owner_id, set()).add(group_id)
    return out


def groups_load(list_ids: list[int]) -> GroupsConfig:
    """`list_ids`: the enabled lists' primary keys in the order of the shared table."""
    groups = list(
        ClientGroup.objects.order_by("-is_default", "name").values_list(
            "pk", "name", "blocking_enabled", "upstreams", "is_default", "rate_limit_exempt"
        )
    )
    if not groups or not groups[0][4]:
        # Migration 0005 creates it and it cannot be deleted; a database without one still serves.
        groups.insert(0, (None, "Default", True, "", True, False))
    number = {pk: i for i, (pk, *_) in enumerate(groups)}
    config = GroupsConfig(default_name=groups[0][1], simple=False)
    for name, ip, cidr, mac, group_id in Client.objects.values_list("name", "ip", "cidr", "mac", "group_id"):
        n = number.get(group_id, 0)
        if ip:
            config.by_ip[ip], config.names_by_ip[ip] = n, name
        elif cidr:
            config.by_cidr.append((cidr, n))
            config.names_by_cidr.append((cidr, name))
        elif mac:
            config.by_mac[mac], config.names_by_mac[mac] = n, name
    index_of = {pk: i for i, pk in enumerate(list_ids)}
    schedules = [
        row
        for row in GroupSchedule.objects.filter(enabled=True).values_list(
            "group_id", "blocklist_id", "weekdays", "start", "end"
        )
        if row[1] in index_of
    ]
    _, _, blocking, upstreams, _, exempt = groups[0]
    if len(groups) == 1 and blocking and not upstreams.strip() and not schedules and not exempt:
        config.simple = True
        return config

    list_groups = _memberships(Blocklist.groups.through, "blocklist_id")
    # A list with a schedule and no groups is meant for its windows: it is not always-on for everyone.
    scheduled = {list_id for _, list_id, *_ in schedules}
    allow_groups = _memberships(AllowedDomain.groups.through, "alloweddomain_id")
    rule_groups = _memberships(BlockRule.groups.through, "blockrule_id")
    # Compiled once, shared by every group that has them.
    hand_rules = []
    for pk, kind, pattern in BlockRule.objects.filter(enabled=True, blocklist__isnull=True).values_list(
        "pk", "kind", "pattern"
    ):
        try:
            hand_rules.append((pk, compile_rule(kind, pattern), f"{kind}:{pattern}"))
        except ValueError:
            continue
    list_rules = []
    for list_id, list_name, kind, pattern in (
        BlockRule.objects.filter(enabled=True, blocklist__enabled=True)
        .order_by("blocklist__name", "pk")
        .values_list("blocklist_id", "blocklist__name", "kind", "pattern")
    ):
        if list_id not in index_of:
            continue
        try:
            list_rules.append((index_of[list_id], compile_rule(kind, pattern), f"list:{list_name} {kind}:{pattern}"))
        except ValueError:
            continue
    allowed = list(AllowedDomain.objects.filter(enabled=True).values_list("pk", "domain", "include_subdomains"))

    several = len(groups) > 1
    specs = []
    for pk, name, blocking, upstreams_text, _, rate_limit_exempt in groups:

        def applies(owners: set[int] | None, pk=pk) -> bool:
            return not owners or pk in owners

        def list_applies(list_id: int, pk=pk) -> bool:
            owners = list_groups.get(list_id)
            return pk in owners if owners else list_id not in scheduled

        suffix = group_suffix(name, several)
        upstreams = ()
        if upstreams_text.strip():
            try:
                upstreams = parse_upstreams(upstreams_text, setting=f"the upstreams of group {name!r}")
            except ConfigError as exc:
                # Validated on the way in; a bad row must not stop a reload.
                logger.warning("%s; the group uses the engine's upstreams", exc)
        specs.append(
            GroupSpec(
                name=name,
                blocking=blocking,
                rate_limit_exempt=rate_limit_exempt,
                lists=frozenset(i for list_id, i in index_of.items() if list_applies(list_id)),
                windows=tuple(
                    Window(index_of[list_id], weekdays, _seconds(start), _seconds(end))
                    for group_id, list_id, weekdays, start, end in schedules
                    if group_id == pk
                ),
                rules=[
                    (regex, label + suffix) for rule_id, regex, label in hand_rules if applies(rule_groups.get(rule_id))
                ],
                list_rules=[(i, regex, label + suffix) for i, regex, label in list_rules],
                allowed=[(domain, sub) for allow_id, domain, sub in allowed if applies(allow_groups.get(allow_id))],
                upstreams=upstreams,
            )
        )
    config.specs = tuple(specs)
    return config
