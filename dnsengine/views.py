"""Blocklists page, the domain test box, and the one-click allow/block actions.

Every change goes through the ORM inside one transaction (so the config
generation signal tells the engines to reload) and is written to Django
admin's LogEntry table, so /admin/'s history shows who changed what.
"""

from __future__ import annotations

import logging
from functools import wraps

from django.contrib import messages
from django.contrib.admin.models import ADDITION, CHANGE
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from dnsengine.blocklist import BlocklistError
from dnsengine.blocklist_services import blocklist_load
from dnsengine.forms import BlocklistUploadForm, DomainActionForm, DomainBlockForm, DomainTestForm, upload_max_bytes
from dnsengine.guardrails import domain_refusal
from dnsengine.models import AllowedDomain, Blocklist
from dnsengine.selectors import DomainCheck, blocklist_list, domain_check
from dnsengine.services import (
    MANUAL_LIST,  # noqa: F401  (where the tests and older imports look for it)
    BlockNeedsConfirmation,
    BlockRefused,
    domain_block,
    log_change,
)

logger = logging.getLogger(__name__)


def staff_required(view):
    """Login first (redirect), then staff (403): a signed-in viewer must not loop back to the login page."""

    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("only staff users can change the DNS configuration")
        return view(request, *args, **kwargs)

    return wrapper


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


# --- Writes ---------------------------------------------------------------------------
# Named and shaped as services (keyword arguments, the acting user, no request)
# so they can move to dnsengine/services.py as they are (domain_block has).


def domain_allow(*, user, domain: str, include_subdomains: bool = False) -> AllowedDomain:
    """Allowlist `domain` (creating or re-enabling its entry); the engines reload on the generation bump."""
    with transaction.atomic():
        entry = AllowedDomain.objects.select_for_update().filter(domain=domain).first()
        if entry is None:
            entry = AllowedDomain.objects.create(
                domain=domain,
                include_subdomains=include_subdomains,
                comment=f"allowed from the web by {user.get_username()}"[:200],
            )
            log_change(user, entry, ADDITION, "Allowed from the query history")
        else:
            entry.enabled = True
            entry.include_subdomains = entry.include_subdomains or include_subdomains
            entry.save(update_fields=["enabled", "include_subdomains"])
            log_change(user, entry, CHANGE, "Enabled from the query history")
    return entry


def blocklist_toggle(*, user, blocklist: Blocklist) -> None:
    with transaction.atomic():
        blocklist.enabled = not blocklist.enabled
        blocklist.save(update_fields=["enabled"])
        log_change(user, blocklist, CHANGE, "Enabled" if blocklist.enabled else "Disabled")


# --- Views ----------------------------------------------------------------------------


@require_GET
@login_required
def blocklists(request: HttpRequest) -> HttpResponse:
    test_form = DomainTestForm(request.GET if "test" in request.GET else None)
    check = domain_check(test_form.cleaned_data["test"]) if test_form.is_bound and test_form.is_valid() else None
    return render(
        request,
        "dnsengine/blocklists.html",
        {
            "blocklists": blocklist_list(),
            "test_form": test_form,
            "check": check,
            # The guard rails refuse these whatever is confirmed: no button that cannot work.
            "can_block": check is not None and not domain_refusal(check.name),
            "upload_form": BlocklistUploadForm(),
            "upload_max": upload_max_bytes(),
        },
    )


@require_POST
@staff_required
def blocklist_toggle_view(request: HttpRequest, pk: int) -> HttpResponse:
    blocklist = get_object_or_404(Blocklist, pk=pk)
    blocklist_toggle(user=request.user, blocklist=blocklist)
    state = "enabled" if blocklist.enabled else "disabled"
    messages.success(request, f'Blocklist "{blocklist.name}" {state}; engines reload within a few seconds.')
    return redirect("dnsengine-blocklists")


class _SizeLimitHandler(FileUploadHandler):
    """Stop reading an upload as soon as it passes the limit, whatever Content-Length claimed."""

    def __init__(self, limit: int, request=None) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int):
        return None


def _too_big(request: HttpRequest, limit: int) -> HttpResponse:
    messages.error(request, f"Upload refused: the file is larger than {filesizeformat(limit)}.")
    return redirect("dnsengine-blocklists")


@csrf_exempt  # only so the size guard is in place before anything reads the body; csrf_protect follows
@require_POST
@staff_required
def blocklist_upload(request: HttpRequest) -> HttpResponse:
    limit = upload_max_bytes()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    # The multipart envelope adds a little to the file; a body far past the limit is refused unread.
    if declared > limit + 64 * 1024:
        return _too_big(request, limit)
    guard = _SizeLimitHandler(limit + 64 * 1024, request)
    request.upload_handlers.insert(0, guard)
    return csrf_protect(_blocklist_upload)(request, guard)


def _blocklist_upload(request: HttpRequest, guard: _SizeLimitHandler) -> HttpResponse:
    form = BlocklistUploadForm(request.POST, request.FILES)
    if guard.exceeded:
        return _too_big(request, upload_max_bytes())
    if not form.is_valid():
        return render(
            request,
            "dnsengine/blocklists.html",
            {
                "blocklists": blocklist_list(),
                "test_form": DomainTestForm(),
                "check": None,
                "upload_form": form,
                "upload_max": upload_max_bytes(),
            },
            status=400,
        )
    upload = form.cleaned_data["file"]
    name = form.cleaned_data["name"]
    try:
        upload.seek(0)
        existed = Blocklist.objects.filter(name=name).exists()
        summary = blocklist_load(
            name, upload, form.cleaned_data["format"], source=f"upload:{upload.name}"[:1000], display=upload.name
        )
    except BlocklistError as exc:
        messages.error(request, f"Upload refused: {exc}")
        return redirect("dnsengine-blocklists")
    blocklist = Blocklist.objects.get(name=name)
    log_change(request.user, blocklist, CHANGE if existed else ADDITION, f"Uploaded {upload.name}")
    messages.success(request, summary.describe())
    return redirect("dnsengine-blocklists")


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
