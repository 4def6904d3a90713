from __future__ import annotations

from django.urls import path

from dnsengine import views

urlpatterns = [
    path("blocklists/", views.blocklists, name="dnsengine-blocklists"),
    path("blocklists/upload/", views.blocklist_upload, name="dnsengine-blocklist-upload"),
    path("blocklists/<int:pk>/toggle/", views.blocklist_toggle_view, name="dnsengine-blocklist-toggle"),
    path("domains/allow/", views.domain_allow_view, name="dnsengine-domain-allow"),
    path("domains/block/", views.domain_block_view, name="dnsengine-domain-block"),
]

# Timed pause of blocking.
from dnsengine import views_pause  # noqa: E402

urlpatterns += [
    path("blocking/pause/", views_pause.pause_view, name="dnsengine-pause"),
    path("blocking/resume/", views_pause.resume_view, name="dnsengine-resume"),
    path("api/pause", views_pause.api_pause, name="api-pause"),
    path("api/resume", views_pause.api_resume, name="api-resume"),
]
