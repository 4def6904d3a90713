"""Is a list entry an ICANN public suffix? Asked once per name of every list import.

dnsengine.blocklists.suffixes answers it from the Public Suffix List, which is slow
enough per name to make a million-name upload noticeably slower. Almost no list name is a
suffix, so this module first asks a cheaper question that is never wrong the
other way: could the name be one at all? It can only if the list has a rule
for the name itself, or a wildcard rule for it or its parent (`*.kawasaki.jp`
makes both `kawasaki.jp` and `x.kawasaki.jp` public), the rules the
`publicsuffixlist` package matches at a name's own depth. Only those few names
are then looked up for real, through dnsengine.blocklists.suffixes.
"""

from __future__ import annotations

from functools import cache

from publicsuffixlist import PSLFILE, encode_idn

from dnsengine.blocklists.suffixes import ICANN, public_suffix_kind

_BEGIN_ICANN = "// ===BEGIN ICANN DOMAINS==="
_END_ICANN = "// ===END ICANN DOMAINS==="


@cache
def _rules() -> tuple[frozenset[str], frozenset[str]]:
    """(names that some ICANN rule names, in any form; the bases of the ICANN wildcard rules)."""
    names: set[str] = set()
    wildcards: set[str] = set()
    icann = False
    with open(PSLFILE, encoding="utf-8") as psl:
        for line in psl:
            line = line.strip()
            if line == _BEGIN_ICANN:
                icann = True
            elif line == _END_ICANN:
                break
            if not icann or not line or line.startswith("//"):
                continue
            rule = line.split()[0].lower().lstrip("!")
            target = names
            if rule.startswith("*."):
                rule, target = rule[2:], wildcards
            # The package matches both forms of an IDN rule; so must the candidates.
            target.update({rule, encode_idn(rule)})
    return frozenset(names | wildcards), frozenset(wildcards)


def is_icann_suffix(name: str) -> bool:
    """True when `name` (normalised: lower-case ASCII, no trailing dot, two labels or more)
    is itself an ICANN public suffix: a top-level domain's registry suffix such as co.uk."""
    names, wildcards = _rules()
    if name not in names and name.partition(".")[2] not in wildcards:
        return False
    return public_suffix_kind(name) == ICANN
