"""The local DNS page: the local records (add, edit, switch off, delete) and the hosts file's, read-only."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dnsengine.forms import LocalRecordForm
from dnsengine.models import LocalRecord
from dnsengine.selectors import local_hosts_file_view, local_record_list
from dnsengine.services.local_records import (
    local_record_create,
    local_record_delete,
    local_record_set_enabled,
    local_record_update,
)
from gloryhole_site.auth import staff_required

SHOWN = 1000  # records listed at most; the search narrows a longer table


def _errors(exc_or_form) -> str:
    if isinstance(exc_or_form, ValidationError):
        if not hasattr(exc_or_form, "error_dict"):
            return "; ".join(exc_or_form.messages)
        errors = exc_or_form.message_dict
    else:
        errors = exc_or_form.errors
    return "; ".join(f"{field}: {' '.join(errs)}" if field != "__all__" else " ".join(errs)
                     for field, errs in errors.items())  # fmt: skip


def _back(request: HttpRequest) -> HttpResponse:
    search = request.POST.get("q", "").strip()
    url = reverse("dnsengine-local-dns")
    return redirect(f"{url}?q={search}" if search else url)


@require_GET
@login_required
def local_dns(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "")[:253]
    records = local_record_list(search)
    editing = None
    form = LocalRecordForm()
    edit = request.GET.get("edit", "")
    if edit.isdigit() and request.user.is_staff:
        editing = LocalRecord.objects.filter(pk=int(edit)).first()
        if editing is not None:
            form = LocalRecordForm(initial={"name": editing.name, "type": editing.type, "value": editing.value,
                                            "ttl": editing.ttl, "enabled": editing.enabled})  # fmt: skip
    total = records.count()
    return render(
        request,
        "dnsengine/local_dns.html",
        {"records": records[:SHOWN], "total": total, "shown": min(total, SHOWN), "search": search,
         "form": form, "editing": editing, "hosts": local_hosts_file_view(search)},
    )  # fmt: skip


def _save(request: HttpRequest, record: LocalRecord | None) -> HttpResponse:
    form = LocalRecordForm(request.POST)
    verb = "added" if record is None else "saved"
    try:
        if not form.is_valid():
            raise ValidationError(_errors(form))
        if record is None:
            record = local_record_create(user=request.user, **form.cleaned_data)
        else:
            record = local_record_update(user=request.user, record=record, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, f"Not {verb}: " + _errors(exc))
        return _back(request)
    messages.success(request, f"{record} {verb}; engines reload within a few seconds.")
    return _back(request)


@require_POST
@staff_required
def local_record_add_view(request: HttpRequest) -> HttpResponse:
    return _save(request, None)


@require_POST
@staff_required
def local_record_edit_view(request: HttpRequest, pk: int) -> HttpResponse:
    return _save(request, get_object_or_404(LocalRecord, pk=pk))


@require_POST
@staff_required
def local_record_toggle_view(request: HttpRequest, pk: int) -> HttpResponse:
    record = get_object_or_404(LocalRecord, pk=pk)
    local_record_set_enabled(user=request.user, record=record, enabled=not record.enabled)
    messages.success(request, f"{record} {'enabled' if record.enabled else 'disabled'}.")
    return _back(request)


@require_POST
@staff_required
def local_record_delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    record = get_object_or_404(LocalRecord, pk=pk)
    text = str(record)
    local_record_delete(user=request.user, record=record)
    messages.success(request, f"{text} deleted.")
    return _back(request)
