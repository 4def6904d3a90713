"""Value types of the engine's options and the parsers of their text form.

An upstream address and the blocking mode, parsed from the text a person writes
(`1.1.1.1, [2606:4700::1111]:53, tls://9.9.9.9#dns.quad9.net`, `ip:0.0.0.0,::`). A bad value raises
`ConfigError` naming the setting it came from; the runtime turns that into Django's
`ImproperlyConfigured` when it reads the settings, so the core stays free of Django.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from dataclasses import dataclass

BLOCKING_MODES = ("null", "nxdomain", "refused", "ip")


class ConfigError(ValueError):
    """A setting's value is not valid; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream resolver: plain DNS (`udp`, with TCP for truncated answers), DNS over
    TLS (`tls`, RFC 7858) or DNS over HTTPS (`https`, RFC 8484)."""

    host: str
    port: int
    scheme: str = "udp"  # udp | tls | https
    tls_name: str = ""  # the name the certificate must carry; the IP itself when empty
    path: str = ""  # https: the URL path, /dns-query
    ca_file: str = ""  # trust only this CA file instead of the system store
    spki: tuple[bytes, ...] = ()  # sha256 digests of accepted public keys (pins), any one must match

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def encrypted(self) -> bool:
        return self.scheme != "udp"

    @property
    def server_name(self) -> str:
        """What the certificate is checked against (and the HTTP :authority)."""
        return self.tls_name or self.host

    @property
    def label(self) -> str:
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if self.scheme == "udp":
            return address
        name = f"#{self.tls_name}" if self.tls_name else ""
        return f"{self.scheme}://{address}{self.path}{name}"

    @property
    def text(self) -> str:
        """The entry as `parse_upstreams` reads it back, options included (`label` leaves them
        out: it names the upstream in logs and the query log, without file paths)."""
        options = [f"ca={self.ca_file}"] if self.ca_file else []
        options += [f"spki={base64.b64encode(pin).decode()}" for pin in self.spki]
        return self.label + ("?" + "&".join(options) if options else "")


@dataclass(frozen=True, slots=True)
class BlockingMode:
    mode: str  # null | nxdomain | refused | ip
    ipv4: str | None = None
    ipv6: str | None = None


def parse_upstreams(raw: str, setting: str = "GLORYHOLE_UPSTREAMS", plain_only: bool = False) -> tuple[Upstream, ...]:
    """Comma-separated upstreams, tried in this order (docs/encrypted-dns.md):

    - `host[:port]`: plain DNS; IPv6 as `[::1]:53` or a bare `::1`;
    - `tls://host[:port][#name][?options]`: DNS over TLS, port 853 by default;
    - `https://host[:port]/path[#name][?options]`: DNS over HTTPS, port 443 by default.

    `#name` is the name the server's certificate must carry (without it, the IP
    address). Options, joined with `&`: `ca=/path/ca.pem` (trust this CA file instead
    of the system store), `spki=BASE64` (the base64 SHA-256 of the server's public key,
    RFC 7469's pin-sha256; repeat it to accept several). Only IP addresses: resolving
    an upstream's name would need an upstream. `plain_only` refuses tls:// and https://
    (for a setting whose user speaks only plain DNS).
    """
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{setting} is empty: name at least one upstream resolver (host[:port])")
    upstreams = []
    for item in items:
        scheme = "udp"
        rest = item
        if "://" in item:
            scheme, rest = item.split("://", 1)
            scheme = scheme.lower()
            if scheme not in ("tls", "https"):
                raise ConfigError(
                    f"{setting}: {item!r}: use host[:port], tls://host[:port] or https://host[:port]/path"
                )
            if plain_only:
                raise ConfigError(f"{setting}: {item!r}: only a plain resolver (host[:port]) can be named here")
            upstreams.append(_parse_encrypted(item, scheme, rest, setting))
            continue
        host, port = _host_port(item, rest, 53, setting)
        upstreams.append(Upstream(host, port))
    return tuple(upstreams)


def _host_port(item: str, text: str, default_port: int, setting: str, hint: str = "") -> tuple[str, int]:
    host, port_text = text, str(default_port)
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ConfigError(f"{setting}: {item!r} has an unclosed '['")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{setting}: {item!r} is not [IPv6]:port")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{setting}: {host!r} in {item!r} is not an IP address{hint}") from None
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{setting}: port {port_text!r} in {item!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{setting}: port {port} in {item!r} is out of range")
    return str(address), port


# A certificate name: letters, digits, hyphens, dots (an IDNA name in its xn-- form).
_TLS_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")
_PATH = re.compile(r"^/[A-Za-z0-9._~!$'()*+;=:@/%-]*$")


def _parse_encrypted(item: str, scheme: str, rest: str, setting: str) -> Upstream:
    rest, _, query = rest.partition("?")
    rest, _, name = rest.partition("#")
    if "?" in name:  # `#name?options` written the other way round is fine too
        name, _, query = name.partition("?")
    path = ""
    slash = rest.find("/", rest.find("]") + 1 if rest.startswith("[") else 0)
    if slash >= 0:
        rest, path = rest[:slash], rest[slash:]
    if scheme == "https":
        if not path:
            raise ConfigError(f"{setting}: {item!r} needs the URL path, as in https://192.0.2.1/dns-query")
        if not _PATH.match(path):
            raise ConfigError(f"{setting}: path {path!r} in {item!r} has characters a URL path cannot")
    elif path not in ("", "/"):
        raise ConfigError(f"{setting}: {item!r}: a tls:// upstream has no path")
    else:
        path = ""
    hint = " (give the IP and the certificate's name after '#': tls://192.0.2.1#dns.example)"
    host, port = _host_port(item, rest, 853 if scheme == "tls" else 443, setting, hint)
    if name and not _TLS_NAME.match(name):
        raise ConfigError(f"{setting}: {name!r} in {item!r} is not a host name for the certificate")
    ca_file = ""
    pins: list[bytes] = []
    for option in (o for o in query.split("&") if o):
        key, sep, value = option.partition("=")
        if not sep or not value:
            raise ConfigError(f"{setting}: option {option!r} in {item!r} is not key=value")
        if key == "ca":
            ca_file = value
        elif key == "spki":
            try:
                digest = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                digest = b""
            if len(digest) != 32:
                raise ConfigError(f"{setting}: spki={value!r} in {item!r} is not a base64 SHA-256 digest")
            pins.append(digest)
        else:
            raise ConfigError(f"{setting}: unknown option {key!r} in {item!r} (ca=, spki=)")
    return Upstream(host, port, scheme, name.rstrip(".").lower(), path, ca_file, tuple(pins))


def parse_blocking_mode(raw: str, setting: str = "GLORYHOLE_BLOCKING_MODE") -> BlockingMode:
    value = raw.strip().lower()
    if value in ("null", "nxdomain", "refused"):
        return BlockingMode(value)
    if value.startswith("ip:"):
        ipv4 = ipv6 = None
        for part in value[3:].split(","):
            try:
                address = ipaddress.ip_address(part.strip())
            except ValueError:
                raise ConfigError(f"{setting}: {part.strip()!r} is not an IP address") from None
            if address.version == 4:
                if ipv4:
                    raise ConfigError(f"{setting}: give at most one IPv4 address")
                ipv4 = str(address)
            else:
                if ipv6:
                    raise ConfigError(f"{setting}: give at most one IPv6 address")
                ipv6 = str(address)
        return BlockingMode("ip", ipv4, ipv6)
    raise ConfigError(f"{setting}={raw!r}: use null, nxdomain, refused or ip:ADDR[,ADDR6]")
