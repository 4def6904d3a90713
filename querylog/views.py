"""Dashboard and query history (with CSV export)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from dnsengine.core.names import normalize_domain
from dnsengine.core.nametext import name_text_for_link
from dnsengine.guardrails import blockable_parent
from dnsengine.selectors import blocklist_names_enabled
from gloryhole_site.auth import staff_required
from querylog.forget import client_forget, forget_targets
from querylog.forms import COMMON_QTYPES, DashboardForm, HistoryFilterForm, PrivacySettingsForm
from querylog.models import QueryLog
from querylog.privacy_settings import privacy_fixed, privacy_notes, privacy_settings_current, privacy_settings_save
from querylog.selectors import (
    HISTORY_FIELDS,
    client_group_names,
    client_names_for,
    dashboard_stats,
    query_history,
    query_history_export,
)

# Statuses that get the "allow this domain" button; the others get "block".
BLOCKED_STATUSES = frozenset({QueryLog.Status.BLOCKED})
# A badge's tooltip: "refused" alone does not say by what.
STATUS_LABELS = dict(QueryLog.Status.choices)


def export_max_rows() -> int:
    return settings.GLORYHOLE_EXPORT_MAX_ROWS


@require_GET
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    form = DashboardForm(request.GET)
    window = form.cleaned_data["window"] if form.is_valid() else "24h"
    stats = dashboard_stats(window)
    names = client_names_for([client for client, _ in stats.top_clients])
    top_clients = [(client, names.get(client, ""), n) for client, n in stats.top_clients]
    return render(
        request,
        "querylog/dashboard.html",
        {
            "form": form,
            "stats": stats,
            "window": window,
            "top_clients": top_clients,
            "list_names": blocklist_names_enabled(),
        },
    )


@require_GET
@login_required
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET)
    page = None
    query_filter = None
    if form.is_valid():
        query_filter = form.cleaned_data["filter"]
        page = query_history(query_filter)
        _add_row_actions(page.rows)
    return render(
        request,
        "querylog/history.html",
        {
            # Computed once here rather than per row in the template: a 500-row
            # page would otherwise spend most of its time building these links.
            "qs_without_client": _query_without(request, "client"),
            "qs_without_domain": _query_without(request, "domain"),
            "qs_without_client_name": _query_without(request, "client_name"),
            "qs_without_client_group": _query_without(request, "client_group"),
            "group_names": client_group_names(),
            "here": request.get_full_path(),
            "allow_url": reverse("dnsengine-domain-allow"),
            "block_url": reverse("dnsengine-domain-block"),
            "form": form,
            "page": page,
            "filter": query_filter,
            "qtypes": COMMON_QTYPES,
            "blocked_statuses": BLOCKED_STATUSES,
            "export_max_rows": export_max_rows(),
            "is_first_page": not request.GET.get("before"),
        },
    )


def _add_row_actions(rows: list[dict]) -> None:
    """Per row: the filter link's value, and what "block"/"allow this domain" may offer.

    A name with odd labels (x=1.doubleclick.net, a\\032b.example) cannot be a
    list entry itself: "block" offers its nearest blockable parent, and "allow"
    nothing, since allowing a parent would let through more than the one name.
    """
    for row in rows:
        name = row["domain"]
        row["domain_link"] = quote(name_text_for_link(name), safe="")
        row["block_target"] = blockable_parent(name)
        row["allowable"] = bool(name) and normalize_domain(name, require_dot=False) == name
        row["status_label"] = STATUS_LABELS.get(row["status"], row["status"])


def _query_without(request: HttpRequest, field: str) -> str:
    """The current filters minus `field` and the page cursor, ready to append `&field=...` to."""
    params = request.GET.copy()
    for key in (field, "before"):
        params.pop(key, None)
    encoded = params.urlencode()
    return encoded + "&" if encoded else ""


class _Echo:
    """csv.writer wants a file; this one hands each formatted line straight back."""

    def write(self, value: str) -> str:
        return value


def _csv_cell(value: object) -> object:
    # A cell starting with = + - @ is a formula to a spreadsheet; a quote makes it text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_lines(rows: Iterator[dict], notes: list[str] = ()) -> Iterator[str]:
    writer = csv.writer(_Echo())
    for note in notes:  # what the privacy settings left out, above the header
        yield writer.writerow([f"# {note}"])
    yield writer.writerow(HISTORY_FIELDS)
    for row in rows:
        row["timestamp"] = row["timestamp"].isoformat()
        yield writer.writerow([_csv_cell(row[f]) for f in HISTORY_FIELDS])


@require_GET
@login_required
def history_export(request: HttpRequest) -> HttpResponse:
    """The current filter as CSV, newest first, streamed, at most GLORYHOLE_EXPORT_MAX_ROWS rows."""
    form = HistoryFilterForm(request.GET)
    if not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
        return HttpResponse(f"Invalid filter: {errors}\n", status=400, content_type="text/plain; charset=utf-8")
    rows = query_history_export(form.cleaned_data["filter"], export_max_rows())
    notes = privacy_notes(privacy_settings_current())
    response = StreamingHttpResponse(_csv_lines(rows, notes), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="queries-{stamp}.csv"'
    return response


# -- privacy ------------------------------------------------------------------------------


@staff_required
def privacy_settings(request: HttpRequest) -> HttpResponse:
    """What the query log keeps: each setting, saved here unless the environment fixes it."""
    fixed = privacy_fixed()
    current = privacy_settings_current()
    if request.method == "POST":
        form = PrivacySettingsForm(request.POST, initial=current, fixed=fixed)
        if form.is_valid():
            privacy_settings_save(form.cleaned_data)
            messages.success(request, "Privacy settings saved; running engines apply them within a few seconds.")
            return redirect(reverse("querylog-privacy-settings"))
    else:
        form = PrivacySettingsForm(initial=current, fixed=fixed)
    return render(
        request,
        "querylog/privacy_settings.html",
        {
            "form": form,
            "row_days": settings.GLORYHOLE_QUERY_LOG_RETENTION_DAYS,
            "rollup_days": settings.GLORYHOLE_ROLLUP_RETENTION_DAYS,
        },
    )


@staff_required
def client_forget_view(request: HttpRequest) -> HttpResponse:
    """GET: what forgetting this client deletes, to confirm; POST: forget it."""
    target = (request.POST if request.method == "POST" else request.GET).get("client", "").strip()[:100]
    clients = forget_targets(target) if target else []
    if not clients:
        messages.error(request, f"Nothing forgotten: no client by the address or name {target!r}.")
        return redirect(reverse("dnsengine-clients"))
    if request.method == "POST":
        report = client_forget(target)
        messages.success(
            request,
            f"Forgot {', '.join(report.clients)}: {report.rows} rows deleted and the statistics they fed corrected.",
        )
        return redirect(reverse("dnsengine-clients"))
    rows = QueryLog.objects.filter(client__in=clients).count()
    return render(request, "querylog/forget_confirm.html", {"target": target, "clients": clients, "rows": rows})
