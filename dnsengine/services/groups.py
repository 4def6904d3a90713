"""Client groups from the groups page: create, rename, delete, their policy and time windows.

Each function runs in one transaction and leaves a LogEntry. The saves bump the
config generation through dnsengine.signals; each function also bumps it once
itself, so a change that saves nothing the signals watch (an m2m set to what it
already was is a no-op, a group with nothing to move) still tells the engines.

A blocklist, allow entry or rule with no groups applies to every group. So
membership is edited as "does it apply to this group?": taking an every-group
item away from one group gives it every other group, and taking an item from
its last group is refused (it would then apply to everyone): disable it instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time

from django.contrib.admin.models import ADDITION, CHANGE, DELETION
from django.core.exceptions import ValidationError
from django.db import transaction

from dnsengine.models import AllowedDomain, Blocklist, BlockRule, ClientGroup, GroupSchedule
from dnsengine.selectors import MEMBERSHIP_MODELS, membership_candidates
from dnsengine.services.admin_log import log_change
from dnsengine.services.config_generation import config_generation_bump


def group_create(*, user, name: str, description: str = "") -> ClientGroup:
    """A new group with the defaults: blocking on, the engine's upstreams. Raises ValidationError."""
    with transaction.atomic():
        group = ClientGroup(name=name.strip(), description=description.strip())
        group.full_clean()
        group.save()
        log_change(user, group, ADDITION, "Created from the groups page")
        config_generation_bump()
    return group


def group_rename(*, user, group: ClientGroup, name: str) -> ClientGroup:
    old = group.name
    with transaction.atomic():
        group.name = name.strip()
        group.full_clean()
        group.save(update_fields=["name"])
        log_change(user, group, CHANGE, f"Renamed from {old!r} on the groups page")
        config_generation_bump()
    return group


def group_settings_update(
    *, user, group: ClientGroup, blocking_enabled: bool, upstreams: str, rate_limit_exempt: bool
) -> ClientGroup:
    """Blocking on/off, upstreams (validated as GLORYHOLE_UPSTREAMS is), rate-limit exemption."""
    with transaction.atomic():
        group.blocking_enabled = blocking_enabled
        group.upstreams = upstreams
        group.rate_limit_exempt = rate_limit_exempt
        group.full_clean()  # normalises and checks the upstreams
        group.save(update_fields=["blocking_enabled", "upstreams", "rate_limit_exempt"])
        upstream_text = group.upstreams or "the engine's"
        log_change(
            user,
            group,
            CHANGE,
            f"Blocking {'on' if blocking_enabled else 'off'}, upstreams {upstream_text},"
            f" rate limit {'exempt' if rate_limit_exempt else 'applies'}",
        )
        config_generation_bump()
    return group


def group_delete(*, user, group: ClientGroup) -> list[str]:
    """Delete a group; its clients fall back to the default group. Returns what had to be disabled.

    A list, allow entry or rule whose only group this is would otherwise apply to
    every group; it is disabled instead (and logged), so the other groups' policy
    stays exactly what it was. The default group cannot be deleted (ValidationError).
    """
    if group.is_default:
        raise ValidationError("The default group cannot be deleted: every client not assigned elsewhere is in it.")
    disabled: list[str] = []
    with transaction.atomic():
        for model, label in ((Blocklist, "blocklist"), (AllowedDomain, "allow entry"), (BlockRule, "rule")):
            for item in model.objects.filter(groups=group, enabled=True):
                if item.groups.exclude(pk=group.pk).exists():
                    continue
                item.enabled = False
                item.save(update_fields=["enabled"])
                log_change(user, item, CHANGE, f"Disabled: its only group {group.name!r} was deleted")
                disabled.append(f"{label} {item}")
        moved = group.clients.count()
        log_change(user, group, DELETION, f"Deleted from the groups page; {moved} client(s) moved to the default group")
        group.delete()
        config_generation_bump()
    return disabled


# --- Which lists, allow entries and rules apply to a group ------------------------------------


def group_membership_update(*, user, group: ClientGroup, kind: str, selected: Iterable[int]) -> list[str]:
    """Make exactly the rows `selected` (pks) of `kind` apply to `group`; returns a line per change.

    Raises ValidationError, changing nothing, when a row would be left with no group
    (which means every group).
    """
    model = MEMBERSHIP_MODELS[kind]
    wanted = set(selected)
    every_group = list(ClientGroup.objects.values_list("pk", flat=True))
    changes: list[str] = []
    with transaction.atomic():
        for item in membership_candidates(kind).select_for_update(of=("self",)):
            groups = {g.pk for g in item.groups.all()}
            applies = not groups or group.pk in groups
            if (item.pk in wanted) == applies:
                continue
            if item.pk in wanted:
                item.groups.add(group)
                changes.append(f"{item} now applies to {group.name}")
                log_change(user, item, CHANGE, f"Applies to group {group.name!r} too (groups page)")
                continue
            rest = (set(every_group) if not groups else groups) - {group.pk}
            if not rest:
                raise ValidationError(
                    f"{model._meta.verbose_name} {item} applies only to {group.name}: with no group left it would"
                    " apply to every group. Disable it instead."
                )
            item.groups.set(sorted(rest))
            changes.append(f"{item} no longer applies to {group.name}")
            log_change(user, item, CHANGE, f"No longer applies to group {group.name!r} (groups page)")
        if changes:
            log_change(user, group, CHANGE, f"{model._meta.verbose_name_plural}: " + "; ".join(changes))
            config_generation_bump()
    return changes


# --- Time windows -----------------------------------------------------------------------------


def schedule_add(
    *, user, group: ClientGroup, blocklist: Blocklist, weekdays: int, start: time, end: time, comment: str = ""
) -> GroupSchedule:
    """A window in which `blocklist` applies to `group`; raises ValidationError (no day, empty window)."""
    with transaction.atomic():
        schedule = GroupSchedule(
            group=group, blocklist=blocklist, weekdays=weekdays, start=start, end=end, comment=comment.strip()
        )
        schedule.full_clean()
        schedule.save()
        log_change(user, group, CHANGE, f"Added the window {schedule}")
        config_generation_bump()
    return schedule


def schedule_remove(*, user, schedule: GroupSchedule) -> None:
    with transaction.atomic():
        text = str(schedule)
        group = schedule.group
        schedule.delete()
        log_change(user, group, CHANGE, f"Removed the window {text}")
        config_generation_bump()
