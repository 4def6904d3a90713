"""The blocklists page with its domain test box; switching a list on or off; uploading a list;
subscribing by URL, editing, deleting, and "fetch now" with its progress."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dnsengine.blocklists.formats import BlocklistError
from dnsengine.forms import BlocklistSubscribeForm, BlocklistUploadForm, DomainTestForm, upload_max_bytes
from dnsengine.guardrails import domain_refusal
from dnsengine.models import Blocklist
from dnsengine.selectors import blocklist_list, domain_check
from dnsengine.services.blocklists import (
    blocklist_delete,
    blocklist_edit,
    blocklist_fetch_active,
    blocklist_fetch_request,
    blocklist_fetch_status,
    blocklist_subscribe,
    blocklist_toggle,
    blocklist_upload,
)
from gloryhole_site.auth import api_auth, staff_required

logger = logging.getLogger(__name__)


def _lists_context(**overrides) -> dict:
    lists = list(blocklist_list().prefetch_related("groups"))
    for b in lists:
        b.fetch_active = blocklist_fetch_active(b)
        b.fetch = blocklist_fetch_status(b)
    context = {
        "blocklists": lists,
        # Without JavaScript the page reloads itself while a fetch is under way.
        "fetching": any(b.fetch_active for b in lists),
        "test_form": DomainTestForm(),
        "check": None,
        "upload_form": BlocklistUploadForm(),
        "upload_max": upload_max_bytes(),
        "subscribe_form": BlocklistSubscribeForm(initial={"enabled": True}),
    }
    context.update(overrides)
    return context


@require_GET
@login_required
def blocklists(request: HttpRequest) -> HttpResponse:
    test_form = DomainTestForm(request.GET if "test" in request.GET else None)
    check = None
    if test_form.is_bound and test_form.is_valid():
        data = test_form.cleaned_data
        check = domain_check(data["test"], client=data.get("client") or "", group=data.get("group"))
    return render(
        request,
        "dnsengine/blocklists.html",
        _lists_context(
            test_form=test_form,
            check=check,
            # The guard rails refuse these whatever is confirmed: no button that cannot work.
            can_block=check is not None and not domain_refusal(check.name),
        ),
    )


@require_POST
@staff_required
def blocklist_subscribe_view(request: HttpRequest) -> HttpResponse:
    form = BlocklistSubscribeForm(request.POST)
    if not form.is_valid():
        return render(request, "dnsengine/blocklists.html", _lists_context(subscribe_form=form), status=400)
    data = form.cleaned_data
    blocklist = blocklist_subscribe(
        user=request.user, name=data["name"], url=data["url"], fmt=data["format"], groups=data["groups"],
        enabled=data["enabled"],
    )  # fmt: skip
    blocklist_fetch_request(user=request.user, blocklist=blocklist)
    messages.success(request, f'Subscribed to "{blocklist.name}"; its first download has started.')
    return redirect("dnsengine-blocklists")


@require_http_methods(["GET", "POST"])
@login_required
def blocklist_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One list: its settings (staff edit them) and its update history."""
    blocklist = get_object_or_404(Blocklist, pk=pk)
    initial = {"name": blocklist.name, "url": blocklist.url, "format": blocklist.format,
               "groups": list(blocklist.groups.all()), "enabled": blocklist.enabled}  # fmt: skip
    form = BlocklistSubscribeForm(initial=initial, instance=blocklist)
    status = 200
    if request.method == "POST":
        if not request.user.is_staff:
            raise PermissionDenied("only staff users can change the DNS configuration")
        form = BlocklistSubscribeForm(request.POST, instance=blocklist)
        if form.is_valid():
            data = form.cleaned_data
            blocklist_edit(
                user=request.user, blocklist=blocklist, name=data["name"], url=data["url"], fmt=data["format"],
                groups=data["groups"], enabled=data["enabled"],
            )  # fmt: skip
            messages.success(request, f'Saved "{blocklist.name}"; engines reload within a few seconds.')
            return redirect("dnsengine-blocklist", pk=blocklist.pk)
        status = 400
    return render(
        request,
        "dnsengine/blocklist.html",
        {"blocklist": blocklist, "form": form, "updates": blocklist.updates.all()[:20],
         "fetch": blocklist_fetch_status(blocklist), "fetching": blocklist_fetch_active(blocklist)},
        status=status,
    )  # fmt: skip


@require_http_methods(["GET", "POST"])
@staff_required
def blocklist_delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: say what deleting removes and ask; POST: delete."""
    blocklist = get_object_or_404(Blocklist, pk=pk)
    if request.method == "GET":
        return render(request, "dnsengine/blocklist_delete.html", {"blocklist": blocklist})
    name = blocklist.name
    blocklist_delete(user=request.user, blocklist=blocklist)
    messages.success(request, f'Deleted "{name}"; engines reload within a few seconds.')
    return redirect("dnsengine-blocklists")


@require_POST
@staff_required
def blocklist_fetch_view(request: HttpRequest, pk: int) -> HttpResponse:
    blocklist = get_object_or_404(Blocklist, pk=pk)
    try:
        started = blocklist_fetch_request(user=request.user, blocklist=blocklist)
    except BlocklistError as exc:
        messages.error(request, f'Not fetched: "{blocklist.name}": {exc}.')
    else:
        if started:
            messages.success(request, f'Fetching "{blocklist.name}" now.')
        else:
            messages.info(request, f'"{blocklist.name}" is being fetched already.')
    return redirect("dnsengine-blocklists")


@require_GET
@api_auth
def api_blocklist_fetch(request: HttpRequest, pk: int) -> JsonResponse:
    """The fetch-now state the lists page polls: pending, running, done or failed, with the result."""
    blocklist = get_object_or_404(Blocklist, pk=pk)
    return JsonResponse(blocklist_fetch_status(blocklist))


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
def blocklist_upload_view(request: HttpRequest) -> HttpResponse:
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
        return render(request, "dnsengine/blocklists.html", _lists_context(upload_form=form), status=400)
    upload = form.cleaned_data["file"]
    try:
        summary = blocklist_upload(
            user=request.user,
            name=form.cleaned_data["name"],
            upload=upload,
            fmt=form.cleaned_data["format"],
            filename=upload.name,
        )
    except BlocklistError as exc:
        messages.error(request, f"Upload refused: {exc}")
        return redirect("dnsengine-blocklists")
    messages.success(request, summary.describe())
    return redirect("dnsengine-blocklists")
