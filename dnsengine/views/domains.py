"""The one-click "allow this domain" and "block this domain" actions of the query history.

Every change goes through a service (dnsengine.services.domains), which writes
it inside one transaction (so the config generation tells the engines to
reload) and to Django admin's LogEntry table, so /admin/'s history shows who
changed what.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dnsengine.forms import DomainActionForm, DomainBlockForm
from dnsengine.selectors import DomainCheck, domain_check
from dnsengine.services.domains import BlockNeedsConfirmation, BlockRefused, domain_allow, domain_block
from gloryhole_site.auth import staff_required

logger = logging.getLogger(__name__)


def _safe_next(request: HttpRequest, target: str, fallback: str) -> str:
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


def _describe(check: DomainCheck) -> str:
    if check.action == "allow":
        return f"{check.name} is allowed ({check.decided_by})"
    if check.action == "block":
        return f"{check.name} is blocked ({check.decided_by})"
    return f"{check.name} is neither blocked nor allowlisted: it is answered normally"


@require_POST
@staff_required
def domain_allow_view(request: HttpRequest) -> HttpResponse:
    return _domain_action(request, "allow")


@require_POST
@staff_required
def domain_block_view(request: HttpRequest) -> HttpResponse:
    return _domain_action(request, "block")


def _domain_action(request: HttpRequest, action: str) -> HttpResponse:
    fallback = reverse("querylog-history")
    form = DomainActionForm(request.POST) if action == "allow" else DomainBlockForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Not changed: " + "; ".join(e for errs in form.errors.values() for e in errs))
        return HttpResponseRedirect(_safe_next(request, request.POST.get("next", ""), fallback))
    back = _safe_next(request, form.cleaned_data["next"], fallback)
    domain = form.cleaned_data["domain"]
    summary = ""
    if action == "allow":
        domain_allow(user=request.user, domain=domain, include_subdomains=form.cleaned_data["include_subdomains"])
    else:
        try:
            verdict = domain_block(user=request.user, domain=domain, confirm=form.cleaned_data["confirm"])
        except BlockRefused as exc:
            messages.error(request, f"Not blocked: {exc.verdict.refused}.")
            return HttpResponseRedirect(back)
        except BlockNeedsConfirmation as exc:
            # Nothing changed yet: the page says what the rule would block and asks again.
            return render(request, "dnsengine/block_confirm.html", {"verdict": exc.verdict, "next": back})
        domain = verdict.target
        summary = f" The rule {verdict.summary}."
    # Report what the engine will now decide, not what was asked: a parent
    # allowlist entry or a disabled list can leave the outcome different.
    check = domain_check(domain)
    wanted = "allow" if action == "allow" else "block"
    text = _describe(check) + "; engines reload within a few seconds." + summary
    if (wanted == "allow" and check.action == "block") or (wanted == "block" and check.action != "block"):
        messages.warning(request, text)
    else:
        messages.success(request, text)
    logger.info("%s %s by %s", action, domain, request.user.get_username())
    return HttpResponseRedirect(back)
