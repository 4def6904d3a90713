from __future__ import annotations

from django.urls import path

from dnsengine.views import blocklists, clients, domains, forwarding, groups, local_records, pause, settings, status

urlpatterns = [
    path("blocklists/", blocklists.blocklists, name="dnsengine-blocklists"),
    path("blocklists/upload/", blocklists.blocklist_upload_view, name="dnsengine-blocklist-upload"),
    path("blocklists/subscribe/", blocklists.blocklist_subscribe_view, name="dnsengine-blocklist-subscribe"),
    path("blocklists/<int:pk>/", blocklists.blocklist_detail, name="dnsengine-blocklist"),
    path("blocklists/<int:pk>/delete/", blocklists.blocklist_delete_view, name="dnsengine-blocklist-delete"),
    path("blocklists/<int:pk>/fetch/", blocklists.blocklist_fetch_view, name="dnsengine-blocklist-fetch"),
    path("api/blocklists/<int:pk>/fetch", blocklists.api_blocklist_fetch, name="api-blocklist-fetch"),
    path("blocklists/<int:pk>/toggle/", blocklists.blocklist_toggle_view, name="dnsengine-blocklist-toggle"),
    path("domains/", domains.domains, name="dnsengine-domains"),
    path("domains/add/", domains.domain_entry_add_view, name="dnsengine-domain-entry-add"),
    path("domains/<str:ref>/edit/", domains.domain_entry_edit_view, name="dnsengine-domain-entry-edit"),
    path("domains/<str:ref>/toggle/", domains.domain_entry_toggle_view, name="dnsengine-domain-entry-toggle"),
    path("domains/<str:ref>/delete/", domains.domain_entry_delete_view, name="dnsengine-domain-entry-delete"),
    path("domains/allow/", domains.domain_allow_view, name="dnsengine-domain-allow"),
    path("domains/block/", domains.domain_block_view, name="dnsengine-domain-block"),
    # Timed pause of blocking.
    path("blocking/pause/", pause.pause_view, name="dnsengine-pause"),
    path("blocking/resume/", pause.resume_view, name="dnsengine-resume"),
    path("api/pause", pause.api_pause, name="api-pause"),
    path("api/resume", pause.api_resume, name="api-resume"),
    # Clients and their groups.
    path("clients/", clients.clients, name="dnsengine-clients"),
    path("clients/assign/", clients.client_assign_view, name="dnsengine-client-assign"),
    path("groups/", groups.groups, name="dnsengine-groups"),
    path("groups/create/", groups.group_create_view, name="dnsengine-group-create"),
    path("groups/<int:pk>/", groups.group_detail, name="dnsengine-group"),
    path("groups/<int:pk>/rename/", groups.group_rename_view, name="dnsengine-group-rename"),
    path("groups/<int:pk>/settings/", groups.group_settings_view, name="dnsengine-group-settings"),
    path("groups/<int:pk>/delete/", groups.group_delete_view, name="dnsengine-group-delete"),
    path("groups/<int:pk>/members/", groups.group_members_view, name="dnsengine-group-members"),
    path("groups/<int:pk>/windows/add/", groups.schedule_add_view, name="dnsengine-schedule-add"),
    path("groups/windows/<int:pk>/remove/", groups.schedule_remove_view, name="dnsengine-schedule-remove"),
    # Conditional forwarding: names under a domain to its own upstreams.
    path("forwarding/", forwarding.forwarding, name="dnsengine-forwarding"),
    path("forwarding/add/", forwarding.forwarding_add_view, name="dnsengine-forwarding-add"),
    path("forwarding/<int:pk>/edit/", forwarding.forwarding_edit_view, name="dnsengine-forwarding-edit"),
    path("forwarding/<int:pk>/delete/", forwarding.forwarding_delete_view, name="dnsengine-forwarding-delete"),
    # Engine settings that apply without a restart (the privacy ones are querylog's /settings/privacy/).
    path("settings/", settings.engine_settings, name="dnsengine-settings"),
    # Local DNS records.
    path("local-dns/", local_records.local_dns, name="dnsengine-local-dns"),
    path("local-dns/add/", local_records.local_record_add_view, name="dnsengine-local-record-add"),
    path("local-dns/<int:pk>/edit/", local_records.local_record_edit_view, name="dnsengine-local-record-edit"),
    path("local-dns/<int:pk>/toggle/", local_records.local_record_toggle_view, name="dnsengine-local-record-toggle"),
    path("local-dns/<int:pk>/delete/", local_records.local_record_delete_view, name="dnsengine-local-record-delete"),
    # The engines' heartbeat rows (EngineStatus).
    path("status/", status.engine_status, name="engine-status"),
    path("api/status", status.api_status, name="api-status"),
]
