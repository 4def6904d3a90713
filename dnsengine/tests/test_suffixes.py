from __future__ import annotations

import pytest

from dnsengine.blocklists.suffixes import ICANN, PRIVATE, public_suffix_kind


@pytest.mark.parametrize("name", ["com", "co.uk", "xn--p1ai", "lan", "localhost", "COM.", "x.ck"])
def test_it_calls_top_level_and_registry_suffixes_icann(name):
    assert public_suffix_kind(name) == ICANN


@pytest.mark.parametrize("name", ["github.io", "blogspot.com"])
def test_it_calls_company_suffixes_private(name):
    assert public_suffix_kind(name) == PRIVATE


@pytest.mark.parametrize("name", ["doubleclick.net", "ads.example.co.uk", "foo.github.io", "www.ck", ""])
def test_it_says_none_for_registrable_names_and_below(name):
    assert public_suffix_kind(name) is None
