"""The forwarding page: conditional-forwarding rules, read by everyone, changed by staff."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from dnsengine.forms import ForwardingRuleForm
from dnsengine.models import ForwardingRule
from dnsengine.services.forwarding import forwarding_rule_create, forwarding_rule_delete, forwarding_rule_update
from gloryhole_site.auth import staff_required


def _errors(exc_or_form) -> str:
    if isinstance(exc_or_form, ValidationError):
        return "; ".join(exc_or_form.messages)
    return "; ".join(f"{field}: {' '.join(errs)}" if field != "__all__" else " ".join(errs)
                     for field, errs in exc_or_form.errors.items())  # fmt: skip


@require_GET
@login_required
def forwarding(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dnsengine/forwarding.html",
        {
            "rules": ForwardingRule.objects.order_by("domain"),
            "add_form": ForwardingRuleForm(initial={"enabled": True}),
            "default_upstreams": settings.GLORYHOLE_UPSTREAMS,
        },
    )


@require_POST
@staff_required
def forwarding_add_view(request: HttpRequest) -> HttpResponse:
    form = ForwardingRuleForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(_errors(form))
        rule = forwarding_rule_create(user=request.user, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, "No rule added: " + _errors(exc))
        return redirect("dnsengine-forwarding")
    messages.success(request, f"Names under {rule.domain} now go to {rule.upstreams}; engines reload within a few"
                              " seconds.")  # fmt: skip
    return redirect("dnsengine-forwarding")


@require_POST
@staff_required
def forwarding_edit_view(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(ForwardingRule, pk=pk)
    form = ForwardingRuleForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(_errors(form))
        forwarding_rule_update(user=request.user, rule=rule, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, "Nothing changed: " + _errors(exc))
        return redirect("dnsengine-forwarding")
    state = "" if rule.enabled else " (off)"
    messages.success(request, f"Rule for {rule.domain} saved{state}; engines reload within a few seconds.")
    return redirect("dnsengine-forwarding")


@require_POST
@staff_required
def forwarding_delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(ForwardingRule, pk=pk)
    domain = rule.domain
    forwarding_rule_delete(user=request.user, rule=rule)
    messages.success(request, f"Rule for {domain} deleted: its names go to the default upstreams again.")
    return redirect("dnsengine-forwarding")
