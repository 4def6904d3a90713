from __future__ import annotations

from django.urls import path

from querylog import api, views

urlpatterns = [
    path("", views.dashboard, name="querylog-dashboard"),
    path("queries/", views.history, name="querylog-history"),
    path("queries/export.csv", views.history_export, name="querylog-export"),
    path("settings/privacy/", views.privacy_settings, name="querylog-privacy-settings"),
    path("clients/forget/", views.client_forget_view, name="querylog-client-forget"),
    path("api/stats", api.stats, name="api-stats"),
    path("api/queries", api.queries, name="api-queries"),
]
