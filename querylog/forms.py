"""Validation of the query-history filters and the dashboard window.

Everything here comes from a URL a person can edit, so every field is checked
and a bad value becomes a form error on the page, never a 500.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta

from django import forms
from django.utils import timezone

from dnsengine.core.names import normalize_domain
from dnsengine.core.nametext import name_text_canonical
from querylog.history import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, SCAN_MAX_WINDOW, HistoryFilter, cursor_decode
from querylog.models import PrivacySettings, QueryLog
from querylog.privacy import parse_dont_log_clients, parse_dont_log_domains

# Presets for "last N" ranges; relative so a bookmarked search stays current.
LAST_CHOICES = [
    ("", "Any time"),
    ("15m", "Last 15 minutes"),
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
]
LAST_DELTAS = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}

DASHBOARD_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}

RCODE_CHOICES = [
    ("", "Any"),
    *[(r, r) for r in ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "FORMERR", "NOTIMP")],
]
COMMON_QTYPES = ("A", "AAAA", "CNAME", "HTTPS", "MX", "NS", "PTR", "SOA", "SRV", "SVCB", "TXT", "ANY")

_QTYPE_RE = re.compile(r"^[A-Z0-9]{1,10}$")
# What the query log stores is printable ASCII: a substring may be any of it but
# the '*' that delimits it (LIKE's own wildcards are escaped by the ORM).
_SUBSTRING_RE = re.compile(r"^[!-)+-~]{1,100}$")


def _name(text: str, value: str) -> str:
    """The name `text` spells, in the text form the engine logs; ValidationError if it is none.

    ASCII input is read as a name's text form, escapes and all, so every name the
    history shows (x=1.doubleclick.net, a\\032b.example) can be searched for
    as it is shown; other input is a name to IDNA-encode (bücher.de).
    """
    if text.isascii():
        try:
            name = name_text_canonical(text)
        except ValueError as exc:
            raise forms.ValidationError(f"{value!r} is not a valid domain name: {exc}") from None
    else:
        name = normalize_domain(text, require_dot=False)
        if name is None:
            raise forms.ValidationError(f"{value!r} is not a valid domain name")
    if not name:
        raise forms.ValidationError("give a name: the DNS root is not searchable here")
    return name


def parse_domain_filter(value: str) -> tuple[str, str]:
    """'example.com' -> exact, '*.example.com' -> suffix (the name and all below), '*ads*' -> substring.

    Raises forms.ValidationError with a message for the page.
    """
    text = value.strip()
    if not text:
        return "", ""
    if text.startswith("*.") and "*" not in text[2:]:
        return "suffix", _name(text[2:], value)
    if text.startswith("*") and text.endswith("*") and len(text) > 2:
        needle = text[1:-1].lower()
        if not _SUBSTRING_RE.match(needle):
            raise forms.ValidationError("a substring may hold printable ASCII characters but '*' (100 at most)")
        return "substring", needle
    if "*" in text:
        raise forms.ValidationError(
            "use example.com (exact), *.example.com (suffix) or *text* (substring); a '*' in a name is \\042"
        )
    return "exact", _name(text, value)


class HistoryFilterForm(forms.Form):
    last = forms.ChoiceField(choices=LAST_CHOICES, required=False, label="Range")
    start = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}), label="From"
    )
    end = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}), label="To"
    )
    client = forms.CharField(required=False, max_length=64, widget=forms.TextInput(attrs={"placeholder": "192.0.2.10"}))
    client_name = forms.CharField(
        required=False,
        max_length=100,
        label="Client name",
        widget=forms.TextInput(attrs={"placeholder": "Anna's phone"}),
        help_text="as the log recorded it; searched in at most 24 hours",
    )
    client_group = forms.CharField(
        required=False,
        max_length=100,
        label="Group",
        widget=forms.TextInput(attrs={"list": "client-groups"}),
        help_text="the group the query was decided under; searched in at most 24 hours",
    )
    domain = forms.CharField(
        required=False,
        # A name of 255 bytes on the wire is up to 1,003 characters of text with escapes.
        max_length=1100,
        widget=forms.TextInput(attrs={"placeholder": "example.com, *.example.com, *ads*"}),
        help_text="exact name (any time), *.suffix or *substring* (at most 24 hours)",
    )
    qtype = forms.CharField(
        required=False, max_length=10, label="Type", widget=forms.TextInput(attrs={"list": "qtypes"})
    )
    status = forms.ChoiceField(choices=[("", "Any"), *QueryLog.Status.choices], required=False)
    rcode = forms.ChoiceField(choices=RCODE_CHOICES, required=False, label="Response")
    limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE, label="Per page")
    before = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def clean_client(self) -> str:
        value = self.cleaned_data["client"].strip()
        if not value:
            return ""
        try:
            # Stored as Django's GenericIPAddressField writes it: the compressed form.
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise forms.ValidationError(f"{value!r} is not an IP address") from None

    def clean_qtype(self) -> str:
        value = self.cleaned_data["qtype"].strip().upper()
        if value and not _QTYPE_RE.match(value):
            raise forms.ValidationError(f"{value!r} is not a query type (A, AAAA, TXT, ...)")
        return value

    def clean_before(self) -> tuple[datetime, int] | None:
        value = self.cleaned_data["before"].strip()
        if not value:
            return None
        cursor = cursor_decode(value)
        if cursor is None:
            raise forms.ValidationError("the page cursor is malformed; start the search again")
        return cursor

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        start, end, last = data.get("start"), data.get("end"), data.get("last")
        if last and start:
            raise forms.ValidationError("choose either a range preset or a start time, not both")
        if last:
            start = timezone.now() - LAST_DELTAS[last]
        if start and end and start > end:
            raise forms.ValidationError("the start of the time range is after its end")
        mode, domain = "", ""
        try:
            mode, domain = parse_domain_filter(data.get("domain", ""))
        except forms.ValidationError as exc:
            self.add_error("domain", exc)
            return data
        applied = False
        name, group = data.get("client_name", "").strip(), data.get("client_group", "").strip()
        scans = [f"a {mode} search"] if mode in ("substring", "suffix") else []
        # A name or group search alone has no index; with an IP or an exact name it walks theirs.
        if not (data.get("client") or mode == "exact"):
            scans += [f"a search by client {what}" for what, value in (("name", name), ("group", group)) if value]
        if scans:
            if start is None:
                start = (end or timezone.now()) - SCAN_MAX_WINDOW
                applied = True
            elif (end or timezone.now()) - start > SCAN_MAX_WINDOW:
                field = "domain" if mode in ("substring", "suffix") else ("client_name" if name else "client_group")
                self.add_error(field, f"{scans[0]} covers at most 24 hours: narrow the time range")
                return data
        data["filter"] = HistoryFilter(
            start=start,
            end=end,
            client=data.get("client", ""),
            client_name=name,
            client_group=group,
            domain=domain,
            domain_mode=mode,
            qtype=data.get("qtype", ""),
            status=data.get("status", ""),
            rcode=data.get("rcode", ""),
            limit=data.get("limit") or DEFAULT_PAGE_SIZE,
            before=data.get("before"),
            scan_window_applied=applied,
        )
        return data


class DashboardForm(forms.Form):
    window = forms.ChoiceField(
        choices=[("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days")], required=False, initial="24h"
    )

    def clean_window(self) -> str:
        return self.cleaned_data["window"] or "24h"


class PrivacySettingsForm(forms.Form):
    """/settings/privacy/: a field an environment variable sets is shown, disabled, as fixed by it."""

    level = forms.TypedChoiceField(
        choices=PrivacySettings.Level.choices, coerce=int, help_text="What each query's row keeps."
    )
    anonymize_clients = forms.BooleanField(
        required=False, label="Store client addresses as their network", help_text="Not the device's address."
    )
    anonymize_v4_prefix = forms.IntegerField(min_value=0, max_value=32, label="IPv4 network prefix")
    anonymize_v6_prefix = forms.IntegerField(min_value=0, max_value=128, label="IPv6 network prefix")
    dont_log_clients = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Never log these clients",
        help_text="IP addresses, networks (10.0.0.0/8) or group names; one a line or comma-separated.",
    )
    dont_log_domains = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Never log these domains",
        help_text="example.com (that name), *.example.com (it and its subdomains).",
    )
    log_blocked_only = forms.BooleanField(required=False, label="Store blocked queries only")

    def __init__(self, *args, fixed: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fixed = fixed
        for name, env in fixed.items():
            field = self.fields[name]
            field.disabled = True
            field.help_text = f"fixed by {env}"

    def _parsed(self, name: str, parse) -> str:
        value = self.cleaned_data[name]
        if len(value) > 20000:
            raise forms.ValidationError("at most 20,000 characters")
        try:
            parse(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        return value

    def clean_dont_log_clients(self) -> str:
        return self._parsed("dont_log_clients", parse_dont_log_clients)

    def clean_dont_log_domains(self) -> str:
        return self._parsed("dont_log_domains", parse_dont_log_domains)
