"""The settings page: the engine settings running engines apply without a restart, changed by staff."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from dnsengine.engine_settings import (
    LIVE_SETTINGS,
    live_settings_current,
    live_settings_fixed,
    live_settings_save,
    live_settings_saved,
)
from dnsengine.forms import EngineSettingsForm
from gloryhole_site.auth import staff_required
from gloryhole_site.dns_env import RELOAD_INTERVAL

SECTIONS = (
    ("dns", "DNS"),
    ("querylog", "Query log"),
    ("retention", "Retention"),
)


@staff_required
def engine_settings(request: HttpRequest) -> HttpResponse:
    """GET: each setting, saved or fixed by the environment; POST: save the ones not fixed."""
    fixed = live_settings_fixed()
    initial = {**live_settings_saved(), **fixed}
    if request.method == "POST":
        form = EngineSettingsForm(request.POST, initial=initial, fixed=fixed)
        if form.is_valid():
            # A field left out of the post (a script setting one value) stays as saved.
            posted = [name for name in form.fields if name not in fixed and name in request.POST]
            changed = live_settings_save({name: form.cleaned_data[name] for name in posted})
            if changed:
                interval = live_settings_current()[RELOAD_INTERVAL.name]
                messages.success(
                    request,
                    f"Saved {', '.join(changed)}; running engines apply it within their reload interval "
                    f"({interval:g} s).",
                )
            else:
                messages.info(request, "Nothing changed.")
            return redirect(reverse("dnsengine-settings"))
    else:
        form = EngineSettingsForm(initial=initial, fixed=fixed)
    sections = [(title, [form[s.name] for s in LIVE_SETTINGS if s.section == key]) for key, title in SECTIONS]
    restart = [
        ("Listening address", "GLORYHOLE_DNS_HOST", settings.GLORYHOLE_DNS_HOST),
        ("Listening port", "GLORYHOLE_DNS_PORT", settings.GLORYHOLE_DNS_PORT),
        ("Engine processes", "GLORYHOLE_DNS_PROCESSES", settings.GLORYHOLE_DNS_PROCESSES),
    ]
    return render(request, "dnsengine/settings.html", {"form": form, "sections": sections, "restart": restart})
