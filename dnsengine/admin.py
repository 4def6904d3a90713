from __future__ import annotations

from django.contrib import admin

from dnsengine.models import (
    AllowedDomain,
    BlockedDomain,
    BlockingPause,
    Blocklist,
    BlockRule,
    EngineStatus,
    LocalRecord,
)


@admin.register(Blocklist)
class BlocklistAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "url", "format", "domain_count", "last_loaded", "next_update", "last_error"]
    list_filter = ["enabled", "format"]
    list_editable = ["enabled"]
    search_fields = ["name", "source", "url"]
    # Written by imports and the updater: editing them by hand would only confuse the next fetch.
    readonly_fields = ["domain_count", "last_loaded", "last_error", "etag", "last_modified", "last_checked"]


@admin.register(BlockedDomain)
class BlockedDomainAdmin(admin.ModelAdmin):
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
    list_filter = ["enabled", "include_subdomains"]
    list_editable = ["enabled"]
    search_fields = ["domain", "comment"]


@admin.register(BlockRule)
class BlockRuleAdmin(admin.ModelAdmin):
    list_display = ["pattern", "kind", "enabled", "comment"]
    list_filter = ["kind", "enabled"]
    list_editable = ["enabled"]
    search_fields = ["pattern", "comment"]


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
