"""Read-only JSON API over the same selectors as the pages.

Signed-in browsers use their session; scripts send
`Authorization: Bearer <GLORYHOLE_API_TOKEN>` (gloryhole_site.auth.api_auth).
Only GET, so there is nothing for CSRF to protect. /api/status is with the
engine status page in dnsengine.views.status.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from gloryhole_site.auth import api_auth
from querylog.forms import DashboardForm, HistoryFilterForm
from querylog.selectors import dashboard_stats, query_history


def _form_errors(form) -> JsonResponse:
    return JsonResponse({"error": "invalid parameters", "fields": form.errors.get_json_data()}, status=400)


@require_GET
@api_auth
def stats(request: HttpRequest) -> HttpResponse:
    form = DashboardForm(request.GET)
    if not form.is_valid():
        return _form_errors(form)
    s = dashboard_stats(form.cleaned_data["window"])
    return JsonResponse(
        {
            "window": s.window,
            "start": s.start.isoformat(),
            "end": s.end.isoformat(),
            "total": s.total,
            "blocked": s.blocked,
            "blocked_pct": round(s.blocked_pct, 2),
            "cached": s.cached,
            "cached_pct": round(s.cached_pct, 2),
            "by_status": s.by_status,
            "clients": s.clients,
            "queries_per_client": round(s.per_client, 1),
            "chart_step_seconds": int(s.chart_step.total_seconds()),
            "chart": [
                {"start": p.start.isoformat(), "allowed": p.allowed, "blocked": p.blocked, "cached": p.cached}
                for p in s.chart
            ],
            "top_since": s.hourly_since.isoformat(),
            "top_domains": [{"domain": d, "count": n} for d, n in s.top_domains],
            "top_blocked": [{"domain": d, "count": n} for d, n in s.top_blocked],
            "top_clients": [{"client": c, "count": n} for c, n in s.top_clients],
            "query_types": [{"qtype": q.name, "count": q.count, "pct": round(q.pct, 2)} for q in s.qtypes],
            "upstreams": [
                {
                    "upstream": u.upstream,
                    "count": u.count,
                    "pct": round(u.pct, 2),
                    "median_ms": round(u.median_us / 1000, 1) if u.median_us is not None else None,
                    "p95_ms": round(u.p95_us / 1000, 1) if u.p95_us is not None else None,
                }
                for u in s.upstreams
            ],
        }
    )


@require_GET
@api_auth
def queries(request: HttpRequest) -> HttpResponse:
    """History rows for the same filters as /queries/; follow `next` for the next page."""
    form = HistoryFilterForm(request.GET)
    if not form.is_valid():
        return _form_errors(form)
    page = query_history(form.cleaned_data["filter"])
    next_url = None
    if page.next_cursor:
        params = request.GET.copy()
        params["before"] = page.next_cursor
        next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
    for row in page.rows:
        row["timestamp"] = row["timestamp"].isoformat()
    return JsonResponse({"results": page.rows, "next_cursor": page.next_cursor, "next": next_url})
