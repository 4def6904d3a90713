"""Pi-hole's configuration to a Plan: a Teleporter zip, or its files given one by one.

Understood, wherever they sit inside a zip: `gravity.db` (lists, allow/deny
entries, regex rules, groups, clients), `pihole.toml` (v6: upstreams, local
records, reverse-lookup servers), and the v5-era `setupVars.conf`, `custom.list`
and `05-pihole-custom-cname.conf`. A zip member is never written under its own
name: it is read by its base name into memory (text) or a temporary file
(gravity.db) within size limits.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import sqlite3
import tempfile
import tomllib
import zipfile
from pathlib import Path

from dnsengine.importers.common import (
    DEFAULT_GROUP,
    MAX_ARCHIVE_MEMBERS,
    MAX_DATABASE_BYTES,
    MAX_TEXT_BYTES,
    Allow,
    ClientEntry,
    Deny,
    Forward,
    Group,
    ImportFileError,
    Plan,
    Record,
    Rule,
    Subscription,
    decode_text,
    host_port,
    read_limited,
)

GRAVITY = "gravity.db"
TOML = "pihole.toml"
SETUPVARS = "setupVars.conf"
CUSTOM_LIST = "custom.list"
CNAME_CONF = "05-pihole-custom-cname.conf"
_TEXT_FILES = (TOML, SETUPVARS, CUSTOM_LIST, CNAME_CONF)

_SQLITE_MAGIC = b"SQLite format 3\x00"

# domainlist.type
EXACT_ALLOW, EXACT_DENY, REGEX_ALLOW, REGEX_DENY = 0, 1, 2, 3

# The regex Pi-hole's web UI writes for "this domain and its subdomains": (\.|^)example\.com$
_SUBDOMAIN_REGEX = re.compile(r"\((?:\\\.\|\^|\^\|\\\.)\)((?:[a-z0-9_-]+\\\.)*[a-z0-9_-]+)\$", re.IGNORECASE)
# FTL's own regex options, which no other resolver understands.
_FTL_OPTIONS = re.compile(r";(querytype|invert|reply)\b", re.IGNORECASE)


def pihole_plan(paths: list[Path]) -> Plan:
    """Read every file (or Teleporter zip) in `paths` into one plan; ImportFileError says why one cannot be."""
    plan = Plan(source="Pi-hole")
    found = False
    with tempfile.TemporaryDirectory(prefix="gloryhole-import-") as scratch:
        for path in paths:
            if not path.is_file():
                raise ImportFileError(f"{path} is not a file")
            for kind, content in _files_of(path, Path(scratch)):
                found = True
                _read_one(plan, kind, content)
    if not found:
        raise ImportFileError(
            f"nothing to import: give a Teleporter zip, {GRAVITY}, {TOML}, {SETUPVARS}, {CUSTOM_LIST} or {CNAME_CONF}"
        )
    return plan


def _files_of(path: Path, scratch: Path):
    """(kind, bytes or a database path) for each file Pi-hole's configuration holds in `path`."""
    with path.open("rb") as file:
        head = file.read(len(_SQLITE_MAGIC))
    if head.startswith(_SQLITE_MAGIC):
        yield GRAVITY, path
        return
    if head.startswith(b"PK"):
        yield from _zip_members(path, scratch)
        return
    if head.startswith(b"\x1f\x8b"):
        raise ImportFileError(
            f"{path.name} is a Pi-hole v5 Teleporter .tar.gz: give its {GRAVITY} and {SETUPVARS} instead,"
            " or a v6 Teleporter zip"
        )
    kind = _kind_of(path.name)
    if kind is None:
        raise ImportFileError(f"{path.name}: not a Pi-hole file this command knows ({', '.join(_TEXT_FILES)})")
    yield kind, read_limited(path)


def _kind_of(name: str) -> str | None:
    if name == GRAVITY:
        return GRAVITY
    if name.endswith(".toml"):
        return TOML
    if name == SETUPVARS:
        return SETUPVARS
    if name.endswith(".list") and "custom" in name:
        return CUSTOM_LIST
    if name.endswith(".conf") and "cname" in name:
        return CNAME_CONF
    return None


def _zip_members(path: Path, scratch: Path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImportFileError(f"{path.name} is not a readable zip archive: {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ARCHIVE_MEMBERS:
            raise ImportFileError(f"{path.name} holds {len(members):,} files: not a Teleporter archive")
        for info in members:
            name = info.filename.replace("\\", "/")
            if info.is_dir() or name.startswith("/") or ".." in name.split("/") or ":" in name:
                continue  # never a path to follow; Teleporter archives hold none
            kind = _kind_of(posixpath.basename(name))
            if kind is None:
                continue
            limit = MAX_DATABASE_BYTES if kind == GRAVITY else MAX_TEXT_BYTES
            if info.file_size > limit:
                raise ImportFileError(f"{name} in {path.name} would be larger than {limit // (1024 * 1024)} MiB")
            try:
                if kind == GRAVITY:
                    target = scratch / f"gravity-{len(list(scratch.iterdir()))}.db"
                    _copy_limited(archive, info, target, limit)
                    yield kind, target
                else:
                    with archive.open(info) as member:
                        data = member.read(limit + 1)
                    if len(data) > limit:
                        raise ImportFileError(f"{name} in {path.name} is larger than it says: refused")
                    yield kind, data
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, NotImplementedError) as exc:
                raise ImportFileError(f"cannot read {name} from {path.name}: {exc}") from None


def _copy_limited(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int) -> None:
    # Counted as written: the size in the archive's directory is only a claim.
    written = 0
    with archive.open(info) as member, target.open("wb") as out:
        while chunk := member.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise ImportFileError(f"{info.filename} is larger than it says: refused")
            out.write(chunk)


def _read_one(plan: Plan, kind: str, content) -> None:
    if kind == GRAVITY:
        _read_gravity(plan, content)
    elif kind == TOML:
        _read_toml(plan, decode_text(content, TOML))
    elif kind == SETUPVARS:
        _read_setupvars(plan, decode_text(content, SETUPVARS))
    elif kind == CUSTOM_LIST:
        for line in decode_text(content, CUSTOM_LIST).splitlines():
            _hosts_line(plan, line)
    elif kind == CNAME_CONF:
        for line in decode_text(content, CNAME_CONF).splitlines():
            line = line.strip()
            if line.startswith("cname="):
                _cname_entry(plan, line[len("cname=") :])


# --- gravity.db --------------------------------------------------------------------------


def _read_gravity(plan: Plan, path: Path) -> None:
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ImportFileError(f"cannot open {GRAVITY}: {exc}") from None
    try:
        _gravity_rows(plan, db)
    except sqlite3.Error as exc:
        raise ImportFileError(f"{GRAVITY} is not a Pi-hole gravity database: {exc}") from None
    finally:
        db.close()


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}


def _gravity_rows(plan: Plan, db: sqlite3.Connection) -> None:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables & {"adlist", "domainlist"}:
        raise ImportFileError(f"{GRAVITY} has neither an adlist nor a domainlist table: not a Pi-hole gravity database")

    names: dict[int, str] = {0: DEFAULT_GROUP}
    if "group" in tables:
        for gid, name, description, enabled in db.execute('SELECT id, name, description, enabled FROM "group"'):
            if gid == 0:
                continue
            names[gid] = str(name)
            plan.groups.append(Group(name=str(name), description=str(description or "")))
            if not enabled:
                plan.notes.append(f"group {name} is disabled in Pi-hole: imported as a group all the same")
    every = set(names)

    def groups_of(table: str, key: str, item_id: int) -> tuple[tuple[str, ...], bool]:
        """(our group names, empty for every group; whether Pi-hole applies the item to anyone)."""
        if table not in tables:
            return (), True
        gids = {row[0] for row in db.execute(f"SELECT group_id FROM {table} WHERE {key} = ?", (item_id,))}
        gids &= every
        if not gids:
            return (), False
        if gids == every:
            return (), True
        return tuple(sorted(names[g] for g in gids)), True

    if "adlist" in tables:
        has_type = "type" in _columns(db, "adlist")
        query = f"SELECT id, address, enabled, comment, {'type' if has_type else '0'} FROM adlist"
        for item_id, address, enabled, comment, list_type in db.execute(query):
            if list_type == 1:
                plan.skip("allowlist subscription (lists here only block)")
                continue
            groups, anyone = groups_of("adlist_by_group", "adlist_id", item_id)
            url = str(address or "").strip()
            plan.subscriptions.append(
                Subscription(
                    name=str(comment or "").strip() or url, url=url, enabled=bool(enabled) and anyone, groups=groups
                )
            )

    if "domainlist" in tables:
        query = "SELECT id, type, domain, enabled, comment FROM domainlist"
        for item_id, entry_type, domain, enabled, comment in db.execute(query):
            groups, anyone = groups_of("domainlist_by_group", "domainlist_id", item_id)
            _domain_entry(plan, entry_type, str(domain or ""), bool(enabled) and anyone, str(comment or ""), groups)

    if "client" in tables:
        for item_id, ip, comment in db.execute("SELECT id, ip, comment FROM client"):
            groups, _ = groups_of("client_by_group", "client_id", item_id)
            # Ours is in one group: a client in several Pi-hole groups goes in the first.
            own = [g for g in groups if g != DEFAULT_GROUP]
            if len(own) > 1:
                plan.notes.append(f"client {ip} is in several Pi-hole groups; put in {own[0]} only")
            plan.clients.append(
                ClientEntry(
                    name=str(comment or "").strip(), identifier=str(ip or ""), group=(own or [DEFAULT_GROUP])[0]
                )
            )


def _domain_entry(plan: Plan, entry_type: int, domain: str, enabled: bool, comment: str, groups) -> None:
    if entry_type == EXACT_ALLOW:
        plan.allowed.append(Allow(domain, False, enabled, comment, groups))
    elif entry_type == EXACT_DENY:
        if not enabled:
            plan.skip("disabled exact block entry (the manual list has no off switch)")
            return
        if groups:
            plan.notes.append(
                f"block entry {domain} was limited to some groups in Pi-hole: it blocks for every group here"
            )
        plan.denied.append(Deny(domain))
    elif entry_type == REGEX_ALLOW:
        match = _SUBDOMAIN_REGEX.fullmatch(domain.strip().lstrip("^"))
        if match:
            plan.allowed.append(Allow(match.group(1).replace("\\.", "."), True, enabled, comment, groups))
        else:
            plan.skip("regex allow rule (the allowlist here takes names, not regexes)")
    elif entry_type == REGEX_DENY:
        if _FTL_OPTIONS.search(domain):
            plan.skip("regex rule with Pi-hole's own ;querytype/;invert/;reply options")
            return
        plan.rules.append(Rule("regex", domain, enabled, comment, groups))
    else:
        plan.skip(f"domainlist entry of unknown type {entry_type}")


# --- pihole.toml and the v5 files ------------------------------------------------------


def _upstream(text: str) -> str:
    """'9.9.9.9#5353' (dnsmasq's port syntax) -> '9.9.9.9:5353'."""
    host, _, port = text.strip().partition("#")
    return host_port(host.strip("[]"), port or None)


def _read_toml(plan: Plan, text: str) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ImportFileError(f"{TOML} is not valid TOML: {exc}") from None
    dns = data.get("dns", {})
    if not isinstance(dns, dict):
        raise ImportFileError(f"{TOML}: [dns] is not a table")
    for item in _strings(plan, dns.get("upstreams", []), "dns.upstreams"):
        plan.add_upstream(_upstream(item))
    for item in _strings(plan, dns.get("hosts", []), "dns.hosts"):
        _hosts_line(plan, item)
    for item in _strings(plan, dns.get("cnameRecords", []), "dns.cnameRecords"):
        _cname_entry(plan, item)
    for item in _strings(plan, dns.get("revServers", []), "dns.revServers"):
        parts = [p.strip() for p in item.split(",")]
        if len(parts) != 4 or parts[0].lower() != "true":
            plan.skip("dns.revServers entry that is off or not enabled,network,server,domain")
            continue
        _reverse_server(plan, parts[1], parts[2], parts[3])


def _strings(plan: Plan, value, key: str) -> list[str]:
    if not isinstance(value, list):
        plan.skip(f"{key} that is not a list")
        return []
    good = [v for v in value if isinstance(v, str)]
    if len(good) != len(value):
        plan.skip(f"{key} entry that is not a string", len(value) - len(good))
    return good


def _hosts_line(plan: Plan, line: str) -> None:
    line = line.split("#", 1)[0].strip()
    if not line:
        return
    address, *names = line.split()
    try:
        kind = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
    except ValueError:
        plan.skip("local record line that does not start with an IP address")
        return
    for name in names:
        plan.records.append(Record(name, kind, address))


def _cname_entry(plan: Plan, text: str) -> None:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    ttl = 300
    if len(parts) >= 3 and parts[-1].isdigit():
        ttl = int(parts.pop())
    if len(parts) < 2:
        plan.skip("CNAME entry that is not alias,target")
        return
    *aliases, target = parts
    for alias in aliases:
        plan.records.append(Record(alias, "CNAME", target, ttl))


def _reverse_server(plan: Plan, network: str, server: str, domain: str) -> None:
    upstream = _upstream(server)
    plan.forwards.append(Forward(domain, upstream))
    try:
        net = ipaddress.ip_network(network, strict=False)
    except ValueError:
        plan.skip("reverse server whose network is not a network")
        return
    # Whole octets (IPv4) or nibbles (IPv6) name the reverse zone; others fall back to the enclosing one.
    step = 8 if net.version == 4 else 4
    labels = net.network_address.reverse_pointer.split(".")
    keep = net.prefixlen // step
    zone_labels = labels[len(labels) - 2 - keep :]
    plan.forwards.append(Forward(".".join(zone_labels), upstream))


def _read_setupvars(plan: Plan, text: str) -> None:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    for key in sorted((k for k in values if re.fullmatch(r"PIHOLE_DNS_\d+", k)), key=lambda k: int(k[11:])):
        if values[key]:
            plan.add_upstream(_upstream(values[key]))
    if values.get("REV_SERVER", "").lower() == "true":
        target, network, domain = (
            values.get(k, "") for k in ("REV_SERVER_TARGET", "REV_SERVER_CIDR", "REV_SERVER_DOMAIN")
        )
        if target and network and domain:
            _reverse_server(plan, network, target, domain)
        else:
            plan.skip("REV_SERVER without its target, network and domain")
