"""{% blocking_pause_status as pause %}: the pause state, for templates/dnsengine/_pause.html.

A tag rather than view context, so any page can `{% include "dnsengine/_pause.html" %}`
without its view knowing about pauses.
"""

from __future__ import annotations

from django import template

from dnsengine.services.pause import PauseStatus, blocking_pause_status

register = template.Library()


@register.simple_tag(name="blocking_pause_status")
def pause_status() -> PauseStatus:
    return blocking_pause_status()
