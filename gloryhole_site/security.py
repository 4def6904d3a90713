"""Who is asking, over which scheme, and what a page may load.

The client address feeds the login throttle (gloryhole_site.throttle) and the
open-to list of the web's /metrics. It is the TCP peer (REMOTE_ADDR) unless that
peer is one of GLORYHOLE_TRUSTED_PROXIES: only then is X-Forwarded-For read, from
the right, skipping the trusted proxies themselves. Anyone can send an
X-Forwarded-For header, so trusting it by default would let an attacker pick a
new address for every guess and never be locked out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Every page: no inline script or style (Django admin included, as of 5.2), nothing from
# elsewhere, never framed, forms post only back here. Kept as one header, not a library:
# the policy has no nonces or per-view exceptions to manage.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


def parse_address(text: str) -> IPAddress | None:
    """An IP address, IPv4-mapped IPv6 as plain IPv4; None for anything else."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def address_in(address: IPAddress | None, networks: Iterable) -> bool:
    return address is not None and any(address in network for network in networks)


def from_trusted_proxy(request: HttpRequest) -> bool:
    return address_in(parse_address(request.META.get("REMOTE_ADDR", "")), settings.GLORYHOLE_TRUSTED_PROXIES)


def client_address(request: HttpRequest) -> str | None:
    """The address of the browser behind the request (AXES_CLIENT_IP_CALLABLE).

    Behind trusted proxies, each appends the address it saw to X-Forwarded-For; the
    rightmost address that is not a trusted proxy is the client. What lies left of it
    came from the client and is ignored.
    """
    peer = parse_address(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        # A unix socket has no peer address; never a string the database's IP column refuses.
        return None
    trusted = settings.GLORYHOLE_TRUSTED_PROXIES
    if not address_in(peer, trusted):
        return str(peer)
    address = peer
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        parsed = parse_address(hop)
        if parsed is None:
            # Not an address: keep the last hop a trusted proxy vouched for.
            break
        address = parsed
        if not address_in(parsed, trusted):
            break
    return str(address)


class TrustedProxyMiddleware:
    """Drops the forwarded-scheme header (SECURE_PROXY_SSL_HEADER) unless a trusted proxy sent it.

    Django believes that header from anyone; a client talking to the web server
    directly must not be able to claim it came over HTTPS. Runs before
    SecurityMiddleware, which redirects and sends HSTS by the scheme.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        header = settings.SECURE_PROXY_SSL_HEADER
        if header and header[0] in request.META and not from_trusted_proxy(request):
            del request.META[header[0]]
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    """Adds CONTENT_SECURITY_POLICY to every response that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # DEBUG's error pages are styled inline; they never reach a production browser.
        if settings.DEBUG and response.status_code >= 400:
            return response
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
