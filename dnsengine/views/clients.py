"""The clients page: every client of the last 24 hours and every configured one; rename and move in one click."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from dnsengine.forms import ClientAssignForm
from dnsengine.models import Client, ClientGroup
from dnsengine.selectors import CLIENTS_WINDOW, client_rows, client_rows_complete
from dnsengine.services.clients import client_assign
from gloryhole_site.auth import staff_required

# Rows per page: the page reads the last logged query of each of them (one indexed seek each).
CLIENTS_PER_PAGE = 100


@require_GET
@login_required
def clients(request: HttpRequest) -> HttpResponse:
    page = Paginator(client_rows(), CLIENTS_PER_PAGE).get_page(request.GET.get("page"))
    client_rows_complete(page.object_list)
    return render(
        request,
        "dnsengine/clients.html",
        {
            "page": page,
            "groups": list(ClientGroup.objects.all()),
            "window_hours": int(CLIENTS_WINDOW.total_seconds() // 3600),
            "here": request.get_full_path(),
        },
    )


@require_POST
@staff_required
def client_assign_view(request: HttpRequest) -> HttpResponse:
    form = ClientAssignForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(" ".join(e) for e in form.errors.values())
        messages.error(request, f"Nothing changed: {errors}")
        return _back(request)
    data = form.cleaned_data
    client = get_object_or_404(Client, pk=data["client"]) if data.get("client") else None
    try:
        saved = client_assign(
            user=request.user, name=data["name"], group=data["group"], ip=data.get("ip") or None, client=client
        )
    except ValidationError as exc:
        messages.error(request, "Nothing changed: " + "; ".join(exc.messages))
        return _back(request)
    messages.success(
        request, f"{saved.identifier} is {saved.name!r} in group {saved.group.name}; engines reload within seconds."
    )
    return _back(request)


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(reverse("dnsengine-clients"))
