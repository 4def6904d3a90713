"""Forms of the blocklists page and the one-click allow/block actions."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from dnsengine.core.names import normalize_domain
from dnsengine.engine_settings import LIVE_SETTINGS, live_setting_parse, live_settings_cross_check
from dnsengine.models import WEEKDAYS, Blocklist, ClientGroup, LocalRecord
from gloryhole_site.dns_env import CACHE_MAX_TTL, CACHE_MIN_TTL

# What a text blocklist may start with: anything but NUL bytes and the magic
# numbers of the binary formats people upload by mistake.
_BINARY_MAGIC = (
    b"\x1f\x8b",
    b"PK\x03\x04",
    b"%PDF",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"\x7fELF",
    b"BZh",
    b"\xfd7zXZ",
)
_SNIFF_BYTES = 8192


def upload_max_bytes() -> int:
    return settings.GLORYHOLE_UPLOAD_MAX_BYTES


class DomainField(forms.CharField):
    """A domain name, normalised the way the engine stores and matches it."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_length", 253)
        super().__init__(**kwargs)

    def clean(self, value: str) -> str:
        value = super().clean(value)
        if not value:
            return value
        name = normalize_domain(value, require_dot=False)
        if name is None:
            raise forms.ValidationError(f"{value!r} is not a valid domain name")
        return name


class DomainTestForm(forms.Form):
    test = DomainField(label="Domain", widget=forms.TextInput(attrs={"placeholder": "ads.example.com"}))
    # Whose policy to check: a client address (its group, as the engine assigns it) or a group.
    client = forms.GenericIPAddressField(
        required=False, label="Client", widget=forms.TextInput(attrs={"placeholder": "client IP (optional)"})
    )
    group = forms.ModelChoiceField(
        queryset=ClientGroup.objects.order_by("-is_default", "name"), required=False, empty_label="default group"
    )


class DomainActionForm(forms.Form):
    domain = DomainField()
    include_subdomains = forms.BooleanField(required=False)
    next = forms.CharField(required=False, max_length=2000)


class DomainBlockForm(forms.Form):
    """The name as typed: the guard rails (services.domain_block) refuse or normalise it, with their reason."""

    domain = forms.CharField(max_length=300)
    # Set by the confirmation page's second submit, after it said what the rule blocks.
    confirm = forms.BooleanField(required=False)
    next = forms.CharField(required=False, max_length=2000)


def sniff_text(head: bytes) -> str | None:
    """None when `head` looks like text; otherwise what it looks like instead."""
    if not head:
        return "the file is empty"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "the file is UTF-16 text; save it as UTF-8"
    if head.startswith(_BINARY_MAGIC) or b"\x00" in head:
        return "the file is not a text file (binary or compressed content)"
    try:
        # A multi-byte character cut at the sniff boundary is not an error.
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            return "the file is not UTF-8 text"
    return None


class BlocklistUploadForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="a new list, or an existing one to replace its domains")
    format = forms.ChoiceField(choices=Blocklist.Format.choices, initial=Blocklist.Format.AUTO)
    file = forms.FileField(help_text="hosts, plain domains or Adblock ||domain^ lines, UTF-8 text")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("give the list a name")
        return name

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = upload_max_bytes()
        if upload.size > limit:
            raise forms.ValidationError(
                f"the file is {filesizeformat(upload.size)}; the limit is {filesizeformat(limit)}"
            )
        upload.seek(0)
        head = upload.read(_SNIFF_BYTES)
        upload.seek(0)
        problem = sniff_text(head)
        if problem:
            raise forms.ValidationError(problem)
        return upload


# --- Clients and groups pages -------------------------------------------------------------


class ClientAssignForm(forms.Form):
    """One row of the clients page: a seen IP (or a Client row's pk), its new name and group."""

    ip = forms.GenericIPAddressField(required=False, widget=forms.HiddenInput)
    client = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    name = forms.CharField(max_length=100)
    group = forms.ModelChoiceField(queryset=ClientGroup.objects.all(), empty_label=None)

    def clean(self) -> dict:
        data = super().clean()
        if not self.errors and not data.get("ip") and not data.get("client"):
            raise forms.ValidationError("say which client: its IP address")
        return data


class GroupNameForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(max_length=500, required=False)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("give the group a name")
        return name


class GroupSettingsForm(forms.Form):
    blocking_enabled = forms.BooleanField(required=False, label="Blocking on")
    upstreams = forms.CharField(
        max_length=1000,
        required=False,
        help_text=(
            "host[:port], tls://IP#name or https://IP/dns-query#name, comma-separated; empty: the engine's upstreams"
        ),
        widget=forms.TextInput(attrs={"placeholder": "the engine's upstreams"}),
    )
    rate_limit_exempt = forms.BooleanField(required=False, label="Exempt from the rate limit")


class GroupMembershipForm(forms.Form):
    """The ticked boxes of one of the group page's lists: which rows apply to the group."""

    kind = forms.ChoiceField(choices=[(k, k) for k in ("blocklists", "allowed_domains", "block_rules")])
    selected = forms.TypedMultipleChoiceField(coerce=int, required=False)

    def __init__(self, *args, choices: dict[str, list[int]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        kind = self.data.get("kind", "")
        self.fields["selected"].choices = [(pk, pk) for pk in choices.get(kind, [])]


WEEKDAY_CHOICES = [(str(1 << i), day.capitalize()) for i, day in enumerate(WEEKDAYS)]


class ScheduleAddForm(forms.Form):
    blocklist = forms.ModelChoiceField(queryset=Blocklist.objects.all(), empty_label=None)
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAY_CHOICES, coerce=int, widget=forms.CheckboxSelectMultiple, error_messages={
            "required": "tick at least one day"}
    )  # fmt: skip
    start = forms.TimeField(widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    end = forms.TimeField(
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"), help_text="before the start: the next day"
    )
    comment = forms.CharField(max_length=200, required=False)

    def clean_weekdays(self) -> int:
        return sum(set(self.cleaned_data["weekdays"]))


class ForwardingRuleForm(forms.Form):
    """A conditional-forwarding rule; the model's clean() validates (and words the errors) as the admin does."""

    domain = forms.CharField(max_length=253, widget=forms.TextInput(attrs={"placeholder": "lan"}))
    # Not required here: an empty list gets the environment parser's message from the model.
    upstreams = forms.CharField(
        max_length=1000,
        required=False,
        help_text=(
            "host[:port], tls://IP#name or https://IP/dns-query#name, comma-separated; several: tried in this order"
        ),
        widget=forms.TextInput(attrs={"placeholder": "192.168.1.1"}),
    )
    enabled = forms.BooleanField(required=False, label="On")
    comment = forms.CharField(max_length=200, required=False)


class LocalRecordForm(forms.Form):
    """A local record's fields; the value syntax is checked by LocalRecord.clean (through the service)."""

    name = forms.CharField(max_length=253, help_text="nas.lan; *.dev.lan for every name below dev.lan")
    type = forms.ChoiceField(choices=LocalRecord.Type.choices, initial="A")
    value = forms.CharField(max_length=1000, help_text=LocalRecord._meta.get_field("value").help_text)
    ttl = forms.IntegerField(min_value=0, max_value=604800, initial=300, label="TTL")
    enabled = forms.BooleanField(required=False, initial=True)


# --- The domains page -----------------------------------------------------------------------

ENTRY_KIND_CHOICES = [
    ("exact", "Exact name"),
    ("subdomains", "This name and below"),
    ("wildcard", "Wildcard (*.example.com)"),
    ("regex", "Regular expression"),
]


class DomainEntryForm(forms.Form):
    """An allow or block entry of the domains page; the guard rails check a block in the service."""

    action = forms.ChoiceField(choices=[("allow", "Allow"), ("block", "Block")])
    kind = forms.ChoiceField(choices=ENTRY_KIND_CHOICES, initial="exact")
    value = forms.CharField(
        max_length=500, label="Name or pattern", widget=forms.TextInput(attrs={"placeholder": "ads.example.com"})
    )
    comment = forms.CharField(max_length=200, required=False)
    enabled = forms.BooleanField(required=False, initial=True)
    groups = forms.ModelMultipleChoiceField(
        queryset=ClientGroup.objects.order_by("-is_default", "name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="none ticked: every group",
    )
    # Set by the confirmation's second submit, after it said what the rule blocks.
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict:
        data = super().clean()
        action, kind, value = data.get("action"), data.get("kind"), (data.get("value") or "").strip()
        if not action or not kind or not value:
            return data
        if kind in ("exact", "subdomains"):
            from dnsengine.guardrails import domain_refusal

            # An address or localhost gets the guard rails' own words (for a block, the service's).
            refused = domain_refusal(value)
            if refused and action == "allow" and "localhost" not in refused:
                raise forms.ValidationError(refused)
            if not refused:
                name = normalize_domain(value, require_dot=False)
                if name is None:
                    self.add_error("value", f"{value!r} is not a valid domain name")
                    return data
                value = name
        elif action == "allow":
            self.add_error("kind", "the allowlist holds names: exact, or this name and below")
            return data
        data["value"] = value
        return data


class DomainSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search",
                        widget=forms.TextInput(attrs={"placeholder": "name, pattern or comment"}))  # fmt: skip
    action = forms.ChoiceField(
        required=False, choices=[("", "allow and block"), ("allow", "allow"), ("block", "block")]
    )
    kind = forms.ChoiceField(required=False, choices=[("", "any kind"), *ENTRY_KIND_CHOICES])
    enabled = forms.ChoiceField(required=False, choices=[("", "on and off"), ("on", "on"), ("off", "off")])


# --- The lists page: subscriptions ----------------------------------------------------------


class BlocklistSubscribeForm(forms.Form):
    name = forms.CharField(max_length=100)
    url = forms.CharField(max_length=1000, label="URL", widget=forms.TextInput(attrs={"placeholder": "https://…"}))
    format = forms.ChoiceField(choices=Blocklist.Format.choices, initial=Blocklist.Format.AUTO)
    groups = forms.ModelMultipleChoiceField(
        queryset=ClientGroup.objects.order_by("-is_default", "name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="none ticked: every group",
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, instance: Blocklist | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance = instance
        if instance is not None and not instance.url:
            # A list loaded by hand (an upload, the manual list) may stay without an address.
            self.fields["url"].required = False

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("give the list a name")
        taken = Blocklist.objects.filter(name=name)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f'a list named "{name}" exists already')
        return name

    def clean_url(self) -> str:
        from urllib.parse import urlsplit

        from django.core.validators import URLValidator

        url = self.cleaned_data["url"].strip()
        if not url and not self.fields["url"].required:
            return ""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            shown = f"{scheme}:" if scheme else "no scheme"
            raise forms.ValidationError(f"only http:// and https:// addresses can be subscribed ({shown} given)")
        try:
            URLValidator(schemes=["http", "https"])(url)
        except forms.ValidationError:
            raise forms.ValidationError(f"{url!r} is not a valid web address") from None
        return url


class EngineSettingsForm(forms.Form):
    """/settings/: each setting as the text its environment variable takes; blank keeps the start-up value.

    Checked by the variable's own parser (dnsengine.engine_settings.live_setting_parse), so
    a bad value gets the message start-up gives. A field the environment sets is shown,
    disabled, as fixed by it.
    """

    def __init__(self, *args, fixed: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fixed = fixed
        self.parsed: dict[str, object] = {}
        for s in LIVE_SETTINGS:
            field = forms.CharField(required=False, label=s.label, help_text=s.help, strip=True)
            field.widget.attrs["placeholder"] = str(getattr(settings, s.name))  # what blank means
            if s.name in fixed:
                field.disabled = True
                field.help_text = f"fixed by {s.name}"
            self.fields[s.name] = field

    def clean(self) -> dict:
        data = super().clean()
        for name, raw in list(data.items()):  # add_error takes the field out of cleaned_data
            if name in self.fixed or not raw:
                continue
            try:
                self.parsed[name] = live_setting_parse(name, raw)
            except ValueError as exc:
                self.add_error(name, str(exc))
        clamps = (CACHE_MIN_TTL.name, CACHE_MAX_TTL.name)
        if not any(name in self.errors for name in clamps):
            # A blank or fixed clamp is the start-up value (environment or default).
            try:
                live_settings_cross_check({name: self.parsed.get(name, getattr(settings, name)) for name in clamps})
            except ValueError as exc:
                self.add_error(CACHE_MIN_TTL.name, str(exc))
        return data
