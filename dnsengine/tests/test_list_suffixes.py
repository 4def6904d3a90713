"""The fast public-suffix check of list imports agrees with dnsengine.blocklists.suffixes, name for name."""

from __future__ import annotations

from publicsuffixlist import PSLFILE, encode_idn

from dnsengine.blocklists.list_suffixes import is_icann_suffix
from dnsengine.blocklists.suffixes import ICANN, public_suffix_kind


def names_around_every_rule() -> set[str]:
    """Each rule of the whole list (private ones too) as a name, with a child, a grandchild and its parents."""
    names: set[str] = set()
    with open(PSLFILE, encoding="utf-8") as psl:
        for line in psl:
            line = line.strip()
            if not line or line.startswith("//"):
                continue
            rule = encode_idn(line.split()[0].lower().lstrip("!").removeprefix("*."))
            labels = rule.split(".")
            names.update(".".join(labels[i:]) for i in range(len(labels)))
            names.update({f"x.{rule}", f"www.x.{rule}", f"ads.example.{rule}"})
    return {name for name in names if "." in name}


def test_it_agrees_with_the_public_suffix_list_around_every_rule():
    names = names_around_every_rule()
    assert len(names) > 30_000
    disagree = [name for name in names if is_icann_suffix(name) != (public_suffix_kind(name) == ICANN)]
    assert disagree == []


def test_it_knows_the_usual_cases():
    assert is_icann_suffix("co.uk") and is_icann_suffix("com.au") and is_icann_suffix("x.ck")
    assert is_icann_suffix("kawasaki.jp") and is_icann_suffix("foo.kawasaki.jp")
    assert not is_icann_suffix("city.kawasaki.jp")  # an exception to the wildcard
    assert not is_icann_suffix("www.ck")
    assert not is_icann_suffix("github.io")  # private part of the list
    assert not is_icann_suffix("ads.example.com") and not is_icann_suffix("bbc.co.uk")
