"""normalize_domain: one normal form for lists, web forms and the matcher; look-alikes are not names."""

from __future__ import annotations

import pytest

from dnsengine.core.names import normalize_domain
from dnsengine.forms import DomainActionForm

LOOKALIKES = [
    "ⓖⓞⓞⓖⓛⓔ.com",  # circled letters: IDNA 2003 (Python's "idna" codec) maps them to google.com
    "\uff47\uff4f\uff4f\uff47\uff4c\uff45.com",  # full-width letters, the same mapping
    "goo\u00adgle.com",  # a soft hyphen, which IDNA 2003 drops
    "g\u200boogle.com",  # a zero-width space, also dropped
    "\u2122.example",  # the trade mark sign, "tm" after compatibility mapping
]


@pytest.mark.parametrize("name", LOOKALIKES)
def test_a_name_that_only_looks_like_another_is_not_a_name(name):
    assert normalize_domain(name) is None
    assert normalize_domain(name, require_dot=False) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("Bücher.Example.", "xn--bcher-kva.example"),
        ("bu\u0308cher.example", "xn--bcher-kva.example"),  # u + combining diaeresis: NFC joins them
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008 keeps ß (IDNA 2003 made it strasse.de)
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("_dmarc.example.com", "_dmarc.example.com"),
    ],
)
def test_a_real_name_gets_its_ascii_form(name, expected):
    assert normalize_domain(name) == expected


@pytest.mark.parametrize("name", ["ⓖⓞⓞⓖⓛⓔ.com", "\uff47\uff4f\uff4f\uff47\uff4c\uff45.com"])
def test_the_web_forms_refuse_a_lookalike_like_the_lists_do(name):
    form = DomainActionForm(data={"domain": name})
    assert not form.is_valid()
    assert "is not a valid domain name" in form.errors["domain"][0]


def test_the_web_forms_take_a_real_idn_in_the_same_form_as_the_lists():
    form = DomainActionForm(data={"domain": "Bücher.example"})
    assert form.is_valid()
    assert form.cleaned_data["domain"] == "xn--bcher-kva.example"
