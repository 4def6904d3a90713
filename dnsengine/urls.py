from __future__ import annotations

from django.urls import path

from dnsengine.views import blocklists, domains, pause, status

urlpatterns = [
    path("blocklists/", blocklists.blocklists, name="dnsengine-blocklists"),
    path("blocklists/upload/", blocklists.blocklist_upload_view, name="dnsengine-blocklist-upload"),
    path("blocklists/<int:pk>/toggle/", blocklists.blocklist_toggle_view, name="dnsengine-blocklist-toggle"),
    path("domains/allow/", domains.domain_allow_view, name="dnsengine-domain-allow"),
    path("domains/block/", domains.domain_block_view, name="dnsengine-domain-block"),
    # Timed pause of blocking.
    path("blocking/pause/", pause.pause_view, name="dnsengine-pause"),
    path("blocking/resume/", pause.resume_view, name="dnsengine-resume"),
    path("api/pause", pause.api_pause, name="api-pause"),
    path("api/resume", pause.api_resume, name="api-resume"),
    # The engines' heartbeat rows (EngineStatus).
    path("status/", status.engine_status, name="engine-status"),
    path("api/status", status.api_status, name="api-status"),
]
