from __future__ import annotations

from django.contrib import admin

from querylog.models import QueryLog


@admin.register(QueryLog)
class QueryLogAdmin(admin.ModelAdmin):
    list_display = ["timestamp", "client", "protocol", "qtype", "domain", "status", "rcode", "rule", "duration_us"]
    list_filter = ["status", "protocol", "qtype"]
    search_fields = ["=domain", "=client"]
    date_hierarchy = None
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
