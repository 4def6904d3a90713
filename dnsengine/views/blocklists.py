"""The blocklists page with its domain test box; switching a list on or off; uploading a list."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from dnsengine.blocklists.formats import BlocklistError
from dnsengine.forms import BlocklistUploadForm, DomainTestForm, upload_max_bytes
from dnsengine.guardrails import domain_refusal
from dnsengine.models import Blocklist
from dnsengine.selectors import blocklist_list, domain_check
from dnsengine.services.blocklists import blocklist_toggle, blocklist_upload
from gloryhole_site.auth import staff_required

logger = logging.getLogger(__name__)


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
