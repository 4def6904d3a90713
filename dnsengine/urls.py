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
