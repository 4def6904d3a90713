"""The domains page (every hand-made allow and block entry) and the one-click "allow this
domain" and "block this domain" actions of the query history, which land in the same rows.

Every change goes through a service (dnsengine.services.domains), which writes
it inside one transaction (so the config generation tells the engines to
reload) and to Django admin's LogEntry table, so /admin/'s history shows who
changed what.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dnsengine.forms import DomainActionForm, DomainBlockForm, DomainEntryForm, DomainSearchForm
from dnsengine.models import AllowedDomain, BlockedDomain, BlockRule
from dnsengine.selectors import DomainCheck, domain_check, domain_entries
from dnsengine.services.domains import (
    MANUAL_LIST,
    BlockNeedsConfirmation,
    BlockRefused,
    EntryInput,
    domain_allow,
    domain_block,
    domain_entry_add,
    domain_entry_delete,
    domain_entry_toggle,
    domain_entry_update,
    entry_by_ref,
    entry_ref,
)
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
        entry = domain_allow(
            user=request.user, domain=domain, include_subdomains=form.cleaned_data["include_subdomains"]
        )
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
        entry = BlockedDomain.objects.filter(blocklist__name=MANUAL_LIST, domain=domain).first()
    # Report what the engine will now decide, not what was asked: a parent
    # allowlist entry or a disabled list can leave the outcome different.
    check = domain_check(domain)
    wanted = "allow" if action == "allow" else "block"
    text = _describe(check) + "; engines reload within a few seconds." + summary
    if entry is not None:
        # The entry on the domains page, where its undo button is.
        link = reverse("dnsengine-domains") + "?" + urlencode({"q": domain, "focus": entry_ref(entry)})
        text = format_html('{} <a href="{}">See it or undo it on the Domains page</a>.', text, link)
    if (wanted == "allow" and check.action == "block") or (wanted == "block" and check.action != "block"):
        messages.warning(request, text)
    else:
        messages.success(request, text)
    logger.info("%s %s by %s", action, domain, request.user.get_username())
    return HttpResponseRedirect(back)


# --- The domains page ------------------------------------------------------------------

PAGE_SIZE = 50


def _entry_input(form: DomainEntryForm) -> EntryInput:
    data = form.cleaned_data
    return EntryInput(
        action=data["action"],
        kind=data["kind"],
        value=data["value"],
        comment=data["comment"].strip(),
        enabled=data["enabled"],
        groups=tuple(data["groups"]),
    )


def _page_context(request: HttpRequest, add_form: DomainEntryForm | None = None) -> dict:
    search = DomainSearchForm(request.GET)
    filters = search.cleaned_data if search.is_valid() else {}
    rows = domain_entries(
        manual_list=MANUAL_LIST,
        query=filters.get("q", ""),
        action=filters.get("action", ""),
        kind=filters.get("kind", ""),
        enabled=filters.get("enabled", ""),
    )
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return {
        "search": search,
        "page": page,
        "query_string": params.urlencode(),
        "focus": request.GET.get("focus", ""),
        "add_form": add_form or DomainEntryForm(initial={"enabled": True}),
    }


@require_GET
@login_required
def domains(request: HttpRequest) -> HttpResponse:
    return render(request, "dnsengine/domains.html", _page_context(request))


def _confirm(request: HttpRequest, exc: BlockNeedsConfirmation, form: DomainEntryForm, action_url: str):
    """The guard rails' second look, posting the same form again with confirm set."""
    fields = [(k, v) for k, vs in form.data.lists() if k not in ("confirm", "csrfmiddlewaretoken") for v in vs]
    return render(
        request,
        "dnsengine/block_confirm.html",
        {
            "verdict": exc.verdict,
            "next": reverse("dnsengine-domains"),
            "confirm_action": action_url,
            "confirm_fields": fields,
        },
    )


@require_POST
@staff_required
def domain_entry_add_view(request: HttpRequest) -> HttpResponse:
    form = DomainEntryForm(request.POST)
    if form.is_valid():
        try:
            row = domain_entry_add(user=request.user, data=_entry_input(form), confirm=form.cleaned_data["confirm"])
        except BlockRefused as exc:
            form.add_error("value", f"Not blocked: {exc.verdict.refused}.")
        except BlockNeedsConfirmation as exc:
            return _confirm(request, exc, form, reverse("dnsengine-domain-entry-add"))
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Added {form.cleaned_data['action']} entry {form.cleaned_data['value']};"
                                      " engines reload within a few seconds.")  # fmt: skip
            query = urlencode({"q": form.cleaned_data["value"], "focus": entry_ref(row)})
            return HttpResponseRedirect(reverse("dnsengine-domains") + "?" + query)
    return render(request, "dnsengine/domains.html", _page_context(request, form), status=400)


def _row_or_404(ref: str):
    row = entry_by_ref(ref)
    if row is None:
        raise Http404("no such entry")
    return row


def _form_for(row) -> DomainEntryForm:
    if isinstance(row, AllowedDomain):
        initial = {"action": "allow", "kind": "subdomains" if row.include_subdomains else "exact", "value": row.domain}
    elif isinstance(row, BlockRule):
        exact = row.kind == BlockRule.Kind.WILDCARD and not any(c in row.pattern for c in "*?")
        initial = {"action": "block", "kind": "exact" if exact else row.kind, "value": row.pattern}
    else:
        return DomainEntryForm(initial={"action": "block", "kind": "subdomains", "value": row.domain, "enabled": True})
    initial.update(comment=row.comment, enabled=row.enabled, groups=list(row.groups.all()))
    return DomainEntryForm(initial=initial)


@require_http_methods(["GET", "POST"])
@login_required
def domain_entry_edit_view(request: HttpRequest, ref: str) -> HttpResponse:
    row = _row_or_404(ref)
    if request.method == "GET":
        return render(request, "dnsengine/domain_edit.html", {"row": row, "ref": ref, "form": _form_for(row)})
    if not request.user.is_staff:
        raise PermissionDenied("only staff users can change the DNS configuration")
    form = DomainEntryForm(request.POST)
    if form.is_valid():
        data = _entry_input(form)
        # What an entry is (allow or block, list name or rule) stays; delete and add to change it.
        fixed = _form_for(row).initial
        if data.action != fixed["action"] or (isinstance(row, BlockedDomain) and data.kind != "subdomains"):
            form.add_error(None, "an entry keeps its action and type of row: delete it and add a new one instead")
        else:
            try:
                domain_entry_update(user=request.user, row=row, data=data, confirm=form.cleaned_data["confirm"])
            except BlockRefused as exc:
                form.add_error("value", f"Not blocked: {exc.verdict.refused}.")
            except BlockNeedsConfirmation as exc:
                return _confirm(request, exc, form, reverse("dnsengine-domain-entry-edit", args=[ref]))
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, f"Saved {data.value}; engines reload within a few seconds.")
                return HttpResponseRedirect(reverse("dnsengine-domains") + "?" + urlencode({"focus": ref}))
    return render(request, "dnsengine/domain_edit.html", {"row": row, "ref": ref, "form": form}, status=400)


@require_POST
@staff_required
def domain_entry_toggle_view(request: HttpRequest, ref: str) -> HttpResponse:
    row = _row_or_404(ref)
    try:
        on = domain_entry_toggle(user=request.user, row=row)
    except ValidationError as exc:
        messages.error(request, "Not changed: " + "; ".join(exc.messages))
    else:
        messages.success(request, f"{row} {'enabled' if on else 'disabled'}; engines reload within a few seconds.")
    return HttpResponseRedirect(_safe_next(request, request.POST.get("next", ""), reverse("dnsengine-domains")))


@require_POST
@staff_required
def domain_entry_delete_view(request: HttpRequest, ref: str) -> HttpResponse:
    row = _row_or_404(ref)
    undo = request.POST.get("undo") == "1"
    text = domain_entry_delete(user=request.user, row=row, why="Undone" if undo else "Deleted from the domains page")
    messages.success(request, f"{'Undone' if undo else 'Deleted'}: {text}; engines reload within a few seconds.")
    return HttpResponseRedirect(_safe_next(request, request.POST.get("next", ""), reverse("dnsengine-domains")))
