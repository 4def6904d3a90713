"""AdGuard Home's AdGuardHome.yaml to a Plan.

Read: `filters` (subscriptions), `user_rules` (the Adblock-style custom rules),
`dns.upstream_dns` (plain and `[/domain/]upstream` conditional entries), the
rewrites (`filtering.rewrites`, or `dns.rewrites` in older files) and
`clients.persistent`. Parsed with PyYAML's safe loader, refusing aliases: a
configuration file has no use for them, and they are how a small YAML file
expands into a huge one.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import yaml

from dnsengine.importers.common import (
    Allow,
    ClientEntry,
    Deny,
    Forward,
    ImportFileError,
    Plan,
    Record,
    Rule,
    Subscription,
    decode_text,
    read_limited,
)

# Hosts-style user rules with these addresses block the name; others answer it.
_SINKHOLES = frozenset({"0.0.0.0", "::", "127.0.0.1", "::1"})
# ||name^ / |name^ / name, with an optional trailing | : the DNS subset of Adblock syntax.
_ADBLOCK = re.compile(r"(?P<anchor>\|\|?)?(?P<name>[^|^$/\s]+)\^?\|?")
_PLAIN_UPSTREAM_SCHEMES = ("udp://",)


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted", event.start_mark)
        return super().compose_node(parent, index)


def adguard_plan(path: Path) -> Plan:
    """Read AdGuardHome.yaml into a plan; ImportFileError says why it cannot be."""
    if not path.is_file():
        raise ImportFileError(f"{path} is not a file")
    text = decode_text(read_limited(path), path.name)
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ImportFileError(f"{path.name} is not valid YAML{line}: {problem}") from None
    if not isinstance(data, dict):
        raise ImportFileError(f"{path.name} is not an AdGuard Home configuration (no top-level mapping)")
    if not any(k in data for k in ("dns", "filters", "user_rules", "clients", "filtering")):
        raise ImportFileError(f"{path.name} is not an AdGuard Home configuration (no dns, filters or user_rules)")
    plan = Plan(source="AdGuard Home")
    _filters(plan, data)
    for rule in _list(plan, data.get("user_rules"), "user_rules"):
        if isinstance(rule, str):
            user_rule(plan, rule)
        else:
            plan.skip("user rule that is not text")
    dns = data.get("dns") if isinstance(data.get("dns"), dict) else {}
    for line in _list(plan, dns.get("upstream_dns"), "dns.upstream_dns"):
        if isinstance(line, str):
            _upstream_line(plan, line)
    if dns.get("upstream_dns_file"):
        plan.notes.append(f"upstreams in {dns['upstream_dns_file']} (upstream_dns_file) are not read")
    filtering = data.get("filtering") if isinstance(data.get("filtering"), dict) else {}
    for rewrite in _list(plan, filtering.get("rewrites", dns.get("rewrites")), "rewrites"):
        _rewrite(plan, rewrite)
    clients = data.get("clients") if isinstance(data.get("clients"), dict) else {}
    for client in _list(plan, clients.get("persistent"), "clients.persistent"):
        _client(plan, client)
    return plan


def _list(plan: Plan, value, key: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        plan.skip(f"{key} that is not a list")
        return []
    return value


def _filters(plan: Plan, data: dict) -> None:
    for item in _list(plan, data.get("filters"), "filters"):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            plan.skip("filter without a url")
            continue
        name = item.get("name") if isinstance(item.get("name"), str) else ""
        plan.subscriptions.append(
            Subscription(name=name or item["url"], url=item["url"], enabled=item.get("enabled") is not False)
        )
    allowlists = _list(plan, data.get("whitelist_filters"), "whitelist_filters")
    if allowlists:
        plan.skip("allowlist subscription (lists here only block)", len(allowlists))


def user_rule(plan: Plan, line: str) -> None:
    """One line of user_rules: a block or allow entry, a regex rule, a hosts line, or a counted skip."""
    line = line.strip()
    if not line or line.startswith(("!", "#")):
        return
    allow = line.startswith("@@")
    body = line[2:] if allow else line
    regex = re.fullmatch(r"/(.+)/(\$.*)?", body)
    if regex:
        if regex.group(2):
            plan.skip("rule with $modifiers (client, dnstype, dnsrewrite, important...)")
        elif allow:
            plan.skip("regex allow rule (the allowlist here takes names, not regexes)")
        else:
            plan.rules.append(Rule("regex", regex.group(1), comment="AdGuard Home user rule"))
        return
    if "##" in body or "#@#" in body or "#$#" in body or "#?#" in body:
        plan.skip("cosmetic rule (hides page elements: nothing for DNS)")
        return
    if "$" in body:
        plan.skip("rule with $modifiers (client, dnstype, dnsrewrite, important...)")
        return
    fields = body.split()
    if not allow and len(fields) >= 2 and _is_address(fields[0]):
        _hosts_rule(plan, fields[0], fields[1:])
        return
    match = _ADBLOCK.fullmatch(body)
    if not match:
        plan.skip("user rule this importer does not understand")
        return
    name, anchor = match.group("name").lower(), match.group("anchor")
    below = anchor != "|"  # ||name^ and a bare name cover the subdomains; |name^ is this name only
    if "*" in name or "?" in name:
        if allow:
            plan.skip("wildcard allow rule (the allowlist here takes names)")
        else:
            plan.rules.append(Rule("wildcard", name, comment="AdGuard Home user rule"))
        return
    if allow:
        plan.allowed.append(Allow(name, include_subdomains=below, comment="AdGuard Home user rule"))
    elif below:
        plan.denied.append(Deny(name))
    else:
        # A wildcard without wildcard characters blocks exactly this one name.
        plan.rules.append(Rule("wildcard", name, comment="AdGuard Home user rule"))


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _hosts_rule(plan: Plan, address: str, names: list[str]) -> None:
    for name in names:
        if name.startswith("#"):
            break
        if address in _SINKHOLES:
            plan.denied.append(Deny(name))
        else:
            plan.records.append(Record(name, "A" if ipaddress.ip_address(address).version == 4 else "AAAA", address))


def _convert_upstream(token: str) -> str | None:
    """An upstream in GLORYHOLE_UPSTREAMS syntax, or None for one it has no way to say (DoH, DoT, names)."""
    for scheme in _PLAIN_UPSTREAM_SCHEMES:
        if token.startswith(scheme):
            token = token[len(scheme) :]
    return None if "://" in token else token


def _upstream_line(plan: Plan, line: str) -> None:
    line = line.strip()
    if not line or line.startswith("#"):
        return
    if line.startswith("[/"):
        close = line.find("/]")
        if close < 0:
            plan.skip("conditional upstream that is not [/domain/]upstream")
            return
        domains = [d for d in line[2:close].split("/") if d]
        for token in line[close + 2 :].split():
            if token == "#":
                continue  # "[/domain/]#": these names go to the default upstreams, as they would here
            upstream = _convert_upstream(token)
            if upstream is None:
                plan.skip("conditional upstream that is not an IP address[:port] (DoH, DoT, a host name)")
                plan.notes.append(f"conditional upstream not converted: {line}")
                continue
            plan.forwards.extend(Forward(domain, upstream) for domain in domains)
        return
    for token in line.split():
        upstream = _convert_upstream(token)
        if upstream is None:
            plan.skip("upstream that is not an IP address[:port] (DoH, DoT, a host name): not converted")
            plan.notes.append(f"upstream not converted: {token}")
        else:
            plan.add_upstream(upstream)


def _rewrite(plan: Plan, rewrite) -> None:
    if not isinstance(rewrite, dict) or not isinstance(rewrite.get("domain"), str):
        plan.skip("rewrite without a domain")
        return
    if rewrite.get("enabled") is False:
        plan.skip("disabled rewrite")
        return
    domain, answer = rewrite["domain"].strip(), str(rewrite.get("answer", "")).strip()
    if answer in ("A", "AAAA"):
        plan.skip("rewrite that keeps the upstream's answer (answer A / AAAA)")
        return
    try:
        version = ipaddress.ip_address(answer).version
    except ValueError:
        plan.records.append(Record(domain, "CNAME", answer))
        return
    plan.records.append(Record(domain, "A" if version == 4 else "AAAA", answer))


def _client(plan: Plan, client) -> None:
    if not isinstance(client, dict):
        plan.skip("persistent client that is not a mapping")
        return
    name = client.get("name") if isinstance(client.get("name"), str) else ""
    ids = client.get("ids") if isinstance(client.get("ids"), list) else []
    if not ids:
        plan.skip("persistent client without ids")
    for identifier in ids:
        plan.clients.append(ClientEntry(name=name, identifier=str(identifier)))
    if client.get("use_global_settings") is False and client.get("filtering_enabled") is False:
        plan.notes.append(f"client {name} has filtering off in AdGuard Home: move it to a group with blocking off")
    if client.get("upstreams"):
        plan.notes.append(f"client {name} has its own upstreams in AdGuard Home: give its group those upstreams")
