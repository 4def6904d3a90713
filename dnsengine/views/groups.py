"""The groups page (the list, a new group) and one group's page (its policy, lists, time windows)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from dnsengine.forms import GroupMembershipForm, GroupNameForm, GroupSettingsForm, ScheduleAddForm
from dnsengine.models import ClientGroup, GroupSchedule
from dnsengine.selectors import (
    MEMBERSHIP_TITLES,
    client_group_list,
    group_memberships,
    membership_candidates,
    weekdays_text,
)
from dnsengine.services.groups import (
    group_create,
    group_delete,
    group_membership_update,
    group_rename,
    group_settings_update,
    schedule_add,
    schedule_remove,
)
from gloryhole_site.auth import staff_required


def _errors(exc_or_form) -> str:
    if isinstance(exc_or_form, ValidationError):
        return "; ".join(exc_or_form.messages)
    return "; ".join(f"{field}: {' '.join(errs)}" if field != "__all__" else " ".join(errs)
                     for field, errs in exc_or_form.errors.items())  # fmt: skip


@require_GET
@login_required
def groups(request: HttpRequest) -> HttpResponse:
    return render(request, "dnsengine/groups.html", {"groups": client_group_list(), "create_form": GroupNameForm()})


@require_GET
@login_required
def group_detail(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(client_group_list(), pk=pk)
    return render(
        request,
        "dnsengine/group.html",
        {
            "group": group,
            "clients": group.clients.all()[:200],
            "rename_form": GroupNameForm(initial={"name": group.name, "description": group.description}),
            "settings_form": GroupSettingsForm(
                initial={
                    "blocking_enabled": group.blocking_enabled,
                    "upstreams": group.upstreams,
                    "rate_limit_exempt": group.rate_limit_exempt,
                }
            ),
            "memberships": group_memberships(group),
            "windows": [(s, weekdays_text(s.weekdays)) for s in group.schedules.all()],
            "schedule_form": ScheduleAddForm(initial={"weekdays": [c for c, _ in ScheduleAddForm.base_fields[
                "weekdays"].choices]}),
        },
    )  # fmt: skip


@require_POST
@staff_required
def group_create_view(request: HttpRequest) -> HttpResponse:
    form = GroupNameForm(request.POST)
    if not form.is_valid():
        messages.error(request, "No group created: " + _errors(form))
        return redirect("dnsengine-groups")
    try:
        group = group_create(user=request.user, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, "No group created: " + _errors(exc))
        return redirect("dnsengine-groups")
    messages.success(request, f"Group {group.name!r} created: choose its lists, then move clients into it.")
    return redirect("dnsengine-group", pk=group.pk)


@require_POST
@staff_required
def group_rename_view(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(ClientGroup, pk=pk)
    form = GroupNameForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(_errors(form))
        group_rename(user=request.user, group=group, name=form.cleaned_data["name"])
    except ValidationError as exc:
        messages.error(request, "Not renamed: " + _errors(exc))
        return redirect("dnsengine-group", pk=pk)
    messages.success(request, f"Group renamed to {group.name!r}.")
    return redirect("dnsengine-group", pk=pk)


@require_POST
@staff_required
def group_settings_view(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(ClientGroup, pk=pk)
    form = GroupSettingsForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(_errors(form))
        group_settings_update(user=request.user, group=group, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, "Nothing changed: " + _errors(exc))
        return redirect("dnsengine-group", pk=pk)
    messages.success(request, f"Group {group.name!r} saved; engines reload within a few seconds.")
    return redirect("dnsengine-group", pk=pk)


@require_POST
@staff_required
def group_delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(ClientGroup, pk=pk)
    name = group.name
    if not request.POST.get("confirm"):
        messages.error(request, f"Tick the box to confirm deleting {name!r}.")
        return redirect("dnsengine-group", pk=pk)
    try:
        disabled = group_delete(user=request.user, group=group)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
        return redirect("dnsengine-group", pk=pk)
    text = f"Group {name!r} deleted; its clients are in the default group now."
    if disabled:
        text += " Disabled, as they applied to this group only: " + ", ".join(disabled) + "."
    messages.success(request, text)
    return redirect("dnsengine-groups")


@require_POST
@staff_required
def group_members_view(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(ClientGroup, pk=pk)
    kind = request.POST.get("kind", "")
    choices = {k: [] for k, _ in MEMBERSHIP_TITLES}
    if kind in choices:
        choices[kind] = [item.pk for item in membership_candidates(kind)]
    form = GroupMembershipForm(request.POST, choices=choices)
    try:
        if not form.is_valid():
            raise ValidationError(_errors(form))
        changes = group_membership_update(
            user=request.user, group=group, kind=form.cleaned_data["kind"], selected=form.cleaned_data["selected"]
        )
    except ValidationError as exc:
        messages.error(request, "Nothing changed: " + _errors(exc))
        return redirect("dnsengine-group", pk=pk)
    if changes:
        messages.success(request, "; ".join(changes) + ". Engines reload within a few seconds.")
    else:
        messages.info(request, "Nothing to change.")
    return redirect("dnsengine-group", pk=pk)


@require_POST
@staff_required
def schedule_add_view(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(ClientGroup, pk=pk)
    form = ScheduleAddForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(_errors(form))
        schedule = schedule_add(user=request.user, group=group, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, "No window added: " + _errors(exc))
        return redirect("dnsengine-group", pk=pk)
    messages.success(request, f"Window added: {schedule}.")
    return redirect("dnsengine-group", pk=pk)


@require_POST
@staff_required
def schedule_remove_view(request: HttpRequest, pk: int) -> HttpResponse:
    schedule = get_object_or_404(GroupSchedule.objects.select_related("group", "blocklist"), pk=pk)
    group_pk = schedule.group_id
    schedule_remove(user=request.user, schedule=schedule)
    messages.success(request, "Window removed.")
    return redirect("dnsengine-group", pk=group_pk)
