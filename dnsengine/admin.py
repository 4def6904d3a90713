from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from dnsengine.guardrails import DOMAIN, Verdict
from dnsengine.models import (
    WEEKDAYS,
    AllowedDomain,
    BlockedDomain,
    BlockingPause,
    Blocklist,
    BlockRule,
    Client,
    ClientGroup,
    EngineStatus,
    ForwardingRule,
    GroupSchedule,
    LocalRecord,
)
from dnsengine.selectors import block_verdict

# --- Guard rails: every block rule added or changed here goes through them ------------

CONFIRM_HELP = (
    "Needed only when the page asks for it: for a rule that blocks a top-level domain or another public"
    " suffix (com, co.uk, github.io), a single-label name, or a large share of the last 24 hours' queries."
    " Tick it once you have read what the rule would block."
)


class GuardedBlockForm(forms.ModelForm):
    """A block rule's admin form: refused rules are errors, broad ones need the confirm box ticked."""

    confirm = forms.BooleanField(required=False, label="Confirm this block rule", help_text=CONFIRM_HELP)
    verdict: Verdict | None = None

    def guard(self, kind: str, value: str, field: str) -> None:
        verdict = self.verdict = block_verdict(kind, value)
        if verdict.refused:
            self.add_error(field, verdict.refused)
        elif verdict.confirm and not self.cleaned_data.get("confirm"):
            reasons = "; ".join(verdict.confirm)
            self.add_error("confirm", f"Tick the box to confirm: {reasons}. The rule {verdict.summary}.")


class BlockedDomainForm(GuardedBlockForm):
    class Meta:
        model = BlockedDomain
        fields = ["blocklist", "domain"]

    def clean(self) -> dict:
        data = super().clean()
        domain = data.get("domain")
        if domain and (self.instance.pk is None or "domain" in self.changed_data):
            self.guard(DOMAIN, domain, "domain")
            if not self.has_error("domain"):
                data["domain"] = self.verdict.target  # normalised: what the engine matches
        return data


class BlockRuleForm(GuardedBlockForm):
    class Meta:
        model = BlockRule
        fields = ["kind", "pattern", "enabled", "comment", "created", "blocklist", "groups"]

    def clean(self) -> dict:
        data = super().clean()
        kind, pattern, enabled = data.get("kind"), data.get("pattern"), data.get("enabled")
        changed = self.instance.pk is None or {"kind", "pattern", "enabled"} & set(self.changed_data)
        if kind and pattern and enabled and changed:
            self.guard(kind, pattern, "pattern")
        return data


class BlockRuleChangelistForm(forms.ModelForm):
    """The changelist's "enabled" box: switching a rule on goes through the guard rails too."""

    class Meta:
        model = BlockRule
        fields = ["enabled"]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("enabled") and "enabled" in self.changed_data:
            verdict = block_verdict(self.instance.kind, self.instance.pattern)
            if verdict.refused:
                self.add_error("enabled", verdict.refused)
            elif verdict.confirm:
                reasons = "; ".join(verdict.confirm)
                self.add_error("enabled", f"Open the rule to confirm it: {reasons}.")
        return data


class GuardedBlockAdmin(admin.ModelAdmin):
    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        verdict = getattr(form, "verdict", None)
        if verdict is not None and not verdict.refused:
            self.message_user(request, f"The rule {verdict.summary}.", messages.INFO)


@admin.register(Blocklist)
class BlocklistAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "url", "format", "domain_count", "last_loaded", "next_update", "last_error"]
    list_filter = ["enabled", "format"]
    list_editable = ["enabled"]
    search_fields = ["name", "source", "url"]
    # Written by imports and the updater: editing them by hand would only confuse the next fetch.
    readonly_fields = ["domain_count", "last_loaded", "last_error", "etag", "last_modified", "last_checked"]
    filter_horizontal = ["groups"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "url":
            kwargs["assume_scheme"] = "https"  # a list URL typed without a scheme: HTTPS, as Django 6 will assume
        return super().formfield_for_dbfield(db_field, request, **kwargs)


@admin.register(BlockedDomain)
class BlockedDomainAdmin(GuardedBlockAdmin):
    form = BlockedDomainForm
    list_display = ["domain", "blocklist"]
    list_filter = ["blocklist"]
    search_fields = ["domain"]
    list_select_related = ["blocklist"]
    # A list of a million rows must not be counted on every page view.
    show_full_result_count = False
    raw_id_fields = ["blocklist"]


@admin.register(AllowedDomain)
class AllowedDomainAdmin(admin.ModelAdmin):
    list_display = ["domain", "include_subdomains", "enabled", "comment", "created"]
    list_filter = ["enabled", "include_subdomains", "groups"]
    list_editable = ["enabled"]
    search_fields = ["domain", "comment"]
    filter_horizontal = ["groups"]


@admin.register(BlockRule)
class BlockRuleAdmin(GuardedBlockAdmin):
    form = BlockRuleForm
    list_display = ["pattern", "kind", "enabled", "comment"]
    list_filter = ["kind", "enabled", "groups"]
    list_editable = ["enabled"]
    search_fields = ["pattern", "comment"]
    filter_horizontal = ["groups"]

    def get_changelist_form(self, request, **kwargs):
        return super().get_changelist_form(request, form=BlockRuleChangelistForm, **kwargs)


@admin.register(LocalRecord)
class LocalRecordAdmin(admin.ModelAdmin):
    list_display = ["name", "type", "value", "ttl", "enabled"]
    list_filter = ["type", "enabled"]
    list_editable = ["enabled"]
    search_fields = ["name", "value"]


@admin.register(EngineStatus)
class EngineStatusAdmin(admin.ModelAdmin):
    list_display = ["name", "heartbeat_at", "qps", "buffer_size", "buffer_capacity", "drops", "written"]
    readonly_fields = [f.name for f in EngineStatus._meta.fields]


@admin.register(BlockingPause)
class BlockingPauseAdmin(admin.ModelAdmin):
    """The engines poll this row: blocking is off while active and not past `until`."""

    list_display = ["active", "until", "changed_at", "changed_by"]


# --- Clients and groups ------------------------------------------------------------------


@admin.register(ClientGroup)
class ClientGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "is_default", "blocking_enabled", "upstreams", "rate_limit_exempt", "description"]
    list_editable = ["blocking_enabled"]
    search_fields = ["name", "description"]

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_default:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        # A bulk delete that includes the default group would fail half-way through.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ["name", "ip", "cidr", "mac", "group", "comment", "created"]
    list_filter = ["group"]
    list_select_related = ["group"]
    search_fields = ["name", "ip", "cidr", "mac", "comment"]


class GroupScheduleForm(forms.ModelForm):
    """The weekday mask as seven tick boxes."""

    days = forms.TypedMultipleChoiceField(
        choices=[(str(i), day.capitalize()) for i, day in enumerate(WEEKDAYS)],
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        label="Weekdays",
        help_text="the days the window opens on",
    )

    class Meta:
        model = GroupSchedule
        fields = ["group", "blocklist", "days", "start", "end", "enabled", "comment"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        mask = self.instance.weekdays if self.instance.pk else 0b1111111
        self.initial.setdefault("days", [str(i) for i in range(7) if mask >> i & 1])

    def clean(self) -> dict:
        data = super().clean()
        self.instance.weekdays = sum(1 << i for i in data.get("days") or ())
        return data


@admin.register(GroupSchedule)
class GroupScheduleAdmin(admin.ModelAdmin):
    form = GroupScheduleForm
    list_display = ["group", "blocklist", "start", "end", "enabled", "comment"]
    list_filter = ["group", "enabled"]
    list_select_related = ["group", "blocklist"]


# --- Conditional forwarding ------------------------------------------------------------


@admin.register(ForwardingRule)
class ForwardingRuleAdmin(admin.ModelAdmin):
    """Saving bumps the config generation (dnsengine.signals); the admin's own LogEntry records who changed what."""

    list_display = ["domain", "upstreams", "enabled", "comment", "created"]
    list_filter = ["enabled"]
    list_editable = ["enabled"]
    search_fields = ["domain", "upstreams", "comment"]
