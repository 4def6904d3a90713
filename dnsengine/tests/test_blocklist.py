from __future__ import annotations

import io
import random

import pytest

from dnsengine.blocklists import formats
from dnsengine.blocklists.formats import (
    MAX_LINE_LENGTH,
    BlocklistError,
    BlocklistTooLarge,
    check_mostly_entries,
    detect_format,
    iter_binary_lines,
    parse_blocklist,
    read_blocklist,
    read_blocklist_file,
)

# --- hosts files ---------------------------------------------------------------------------------


def test_it_reads_names_after_any_ip_prefix_in_hosts_files():
    lines = [
        "0.0.0.0 a.example.com",
        "127.0.0.1 b.example.com",
        ":: c.example.com",
        "::1 d.example.com",
        "::ffff:0.0.0.0 e.example.com",
        "192.168.1.1\tf.example.com",
    ]
    result = parse_blocklist(lines, "hosts")
    assert result.domains == [f"{c}.example.com" for c in "abcdef"]
    assert not result.skipped


def test_it_reads_several_names_on_one_hosts_line():
    result = parse_blocklist(["0.0.0.0 a.example.com b.example.com   c.example.com"], "hosts")
    assert result.domains == ["a.example.com", "b.example.com", "c.example.com"]


def test_it_skips_inline_comments_in_hosts_files():
    result = parse_blocklist(["0.0.0.0 ads.example.com # tracker.example.com", "0.0.0.0 x.example.com#note"], "hosts")
    assert result.domains == ["ads.example.com", "x.example.com"]
    assert not result.skipped


def test_it_skips_hosts_boilerplate_entries():
    lines = [
        "127.0.0.1 localhost",
        "127.0.0.1 localhost.localdomain",
        "255.255.255.255 broadcasthost",
        "0.0.0.0 local",
        "::1 ip6-localhost ip6-loopback",
        "ff02::1 ip6-allnodes",
        "0.0.0.0 0.0.0.0",
        "0.0.0.0 ads.example.com",
    ]
    result = parse_blocklist(lines, "hosts")
    assert result.domains == ["ads.example.com"]
    assert result.skipped == {"hosts boilerplate": 8}


def test_it_counts_comment_and_blank_lines_as_comments_not_as_skipped():
    result = parse_blocklist(["# Title", "", "   ", "0.0.0.0 ads.example.com", "#0.0.0.0 old.example.com"], "hosts")
    assert result.domains == ["ads.example.com"]
    assert result.comments == 4
    assert not result.skipped
    assert result.lines == 5


def test_it_skips_a_hosts_line_whose_first_field_is_not_an_address():
    result = parse_blocklist(["ads.example.com tracker.example.com"], "hosts")
    assert result.domains == []
    assert result.skipped == {"malformed line": 1}


# --- plain domain lists --------------------------------------------------------------------------


def test_it_reads_one_domain_per_line():
    result = parse_blocklist(["ads.example.com", "tracker.example.net"], "domains")
    assert result.domains == ["ads.example.com", "tracker.example.net"]
    assert result.format == "domains"


def test_it_keeps_a_wildcard_in_a_plain_list_as_the_domain_itself():
    # The matcher blocks a listed name and all its subdomains: ||domain^ semantics.
    result = parse_blocklist(["*.ads.example.com"], "domains")
    assert result.domains == ["ads.example.com"]


def test_it_normalises_case_and_the_trailing_dot():
    result = parse_blocklist(["Ads.Example.COM."], "domains")
    assert result.domains == ["ads.example.com"]


def test_it_converts_unicode_names_to_punycode():
    result = parse_blocklist(["bücher.example", "0.0.0.0 пример.рф"], "hosts")
    assert result.domains == ["xn--bcher-kva.example", "xn--e1afmkfd.xn--p1ai"]


def test_it_removes_duplicates_keeping_the_first_position():
    result = parse_blocklist(["b.example.com", "a.example.com", "B.example.com", "a.example.com."], "domains")
    assert result.domains == ["b.example.com", "a.example.com"]
    assert result.skipped == {"duplicate": 2}


@pytest.mark.parametrize("name", ["-bad.example.com", "a..example.com", "ads", "*ads.example.com", "x" * 64 + ".com"])
def test_it_skips_invalid_names(name):
    result = parse_blocklist([name], "domains")
    assert result.domains == []
    assert result.skipped == {"invalid domain": 1}


@pytest.mark.parametrize("line", ["10.0.0.1", "2001:db8::1", "0.0.0.0 10.0.0.1", "0.0.0.0 ::1"])
def test_it_skips_ip_addresses_given_as_the_domain(line):
    result = parse_blocklist([line], "hosts")
    assert result.domains == []
    assert result.skipped == {"IP address": 1}


def test_it_skips_names_whose_top_level_label_is_all_digits():
    result = parse_blocklist(["example.123"], "domains")
    assert result.skipped == {"invalid domain": 1}


def test_it_reads_hosts_lines_in_a_plain_domain_list():
    result = parse_blocklist(["ads.example.com", "0.0.0.0 tracker.example.com"], "domains")
    assert result.domains == ["ads.example.com", "tracker.example.com"]


# --- Adblock lists -------------------------------------------------------------------------------


def test_it_reads_adblock_domain_rules():
    result = parse_blocklist(["||ads.example.com^", "||tracker.example.net^|", "||*.wild.example.org^"], "adblock")
    assert result.domains == ["ads.example.com", "tracker.example.net", "wild.example.org"]
    assert not result.skipped


def test_it_collects_adblock_exceptions_as_allowed_domains():
    result = parse_blocklist(["||ads.example.com^", "@@||good.example.com^", "@@||good.example.com^"], "adblock")
    assert result.domains == ["ads.example.com"]
    assert result.allowed == ["good.example.com"]


def test_it_keeps_rules_with_ignorable_modifiers_and_counts_them():
    result = parse_blocklist(["||a.example.com^$important", "||b.example.com^$third-party,~script"], "adblock")
    assert result.domains == ["a.example.com", "b.example.com"]
    assert result.ignored_modifiers == 2
    assert not result.skipped


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("||ads.example.com^$badfilter", "modifier $badfilter"),
        ("||ads.example.com^$dnsrewrite=NOERROR;A;1.2.3.4", "modifier $dnsrewrite"),
        ("||ads.example.com^$client=192.168.0.2", "modifier $client"),
        ("||example.com^$denyallow=good.example.com", "modifier $denyallow"),
        ("@@||ads.example.com^$important,badfilter", "modifier $badfilter"),
    ],
)
def test_it_skips_rules_whose_modifiers_change_their_meaning(rule, reason):
    result = parse_blocklist([rule], "adblock")
    assert result.domains == []
    assert result.allowed == []
    assert result.skipped == {reason: 1}


def test_it_groups_unknown_modifiers_under_one_reason():
    result = parse_blocklist(["||a.example.com^$foo", "||b.example.com^$bar=1"], "adblock")
    assert result.skipped == {"unsupported modifier": 2}


@pytest.mark.parametrize(
    "rule",
    ["##.ad-banner", "example.com##.ad", "example.com#@#.ad", "example.com#?#div:has(.ad)", "example.com$$script"],
)
def test_it_skips_cosmetic_rules(rule):
    result = parse_blocklist([rule], "adblock")
    assert result.skipped == {"cosmetic rule": 1}


@pytest.mark.parametrize(
    "rule", ["||ads.example.com/banner.js", "|https://ads.example.com^", "||ads.example.com:8080^"]
)
def test_it_skips_url_rules(rule):
    result = parse_blocklist([rule], "adblock")
    assert result.skipped == {"URL rule": 1}


def test_it_skips_regex_rules():
    result = parse_blocklist([r"/^ad[0-9]+\.example\.com$/"], "adblock")
    assert result.skipped == {"regex rule": 1}


def test_it_skips_wildcards_inside_adblock_rules():
    result = parse_blocklist(["||ads*.example.com^"], "adblock")
    assert result.skipped == {"wildcard rule": 1}


def test_it_skips_non_dns_adblock_rules():
    result = parse_blocklist(["-ad-banner-", "&ad_type="], "adblock")
    assert result.skipped == {"not a DNS rule": 2}


def test_it_treats_adblock_headers_and_bang_lines_as_comments():
    result = parse_blocklist(["[Adblock Plus 2.0]", "! Title: test", "||ads.example.com^"], "adblock")
    assert result.comments == 2
    assert not result.skipped


def test_it_reads_plain_domains_and_hosts_lines_in_an_adblock_list():
    result = parse_blocklist(["||a.example.com^", "b.example.com", "0.0.0.0 c.example.com"], "adblock")
    assert result.domains == ["a.example.com", "b.example.com", "c.example.com"]


# --- format detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["# hosts", "127.0.0.1 localhost", "0.0.0.0 ads.example.com"], "hosts"),
        (["# plain", "ads.example.com", "tracker.example.com"], "domains"),
        (["! adblock", "||ads.example.com^", "||tracker.example.com^"], "adblock"),
        (["[Adblock Plus 2.0]", "ads.example.com"], "adblock"),
        ([], "domains"),
    ],
)
def test_it_detects_the_format(lines, expected):
    assert parse_blocklist(lines).format == expected


def test_it_ignores_hash_banners_when_detecting_a_hosts_file():
    lines = ["#" * 40, "## Section ##", "0.0.0.0 ads.example.com"]
    assert detect_format(lines) == "hosts"


def test_it_detects_adblock_rules_after_a_long_comment_header_and_parses_the_buffered_lines():
    lines = [f"! comment {i}" for i in range(1000)] + [f"||ads{i}.example.com^" for i in range(300)]
    result = parse_blocklist(lines)
    assert result.format == "adblock"
    assert len(result.domains) == 300
    assert result.domains[0] == "ads0.example.com"
    assert result.comments == 1000


def test_it_uses_the_given_format_instead_of_detecting():
    result = parse_blocklist(["||ads.example.com^", "plain.example.com"], "domains")
    assert result.format == "domains"
    assert result.domains == ["plain.example.com"]
    # Counted as a rule of another format, not as an unreadable line.
    assert result.skipped == {"Adblock rule": 1}


def test_it_rejects_an_unknown_format():
    with pytest.raises(ValueError, match="unknown blocklist format"):
        parse_blocklist([], "csv")


# --- hostile input -------------------------------------------------------------------------------


def test_it_strips_crlf_line_endings():
    result = parse_blocklist([b"0.0.0.0 ads.example.com\r\n", b"# c\r\n", b"\r\n"])
    assert result.domains == ["ads.example.com"]
    assert result.comments == 2


@pytest.mark.parametrize("first", [b"\xef\xbb\xbf0.0.0.0 ads.example.com\n", "\ufeff0.0.0.0 ads.example.com\n"])
def test_it_ignores_a_utf8_byte_order_mark(first):
    result = parse_blocklist([first], "hosts")
    assert result.domains == ["ads.example.com"]
    assert not result.skipped


def test_it_skips_lines_with_nul_bytes_as_not_text():
    result = parse_blocklist([b"ads.example.com\x00\n", "x.example.com\x00", b"ok.example.com\n"])
    assert result.domains == ["ok.example.com"]
    assert result.skipped == {"not text": 2}


def test_it_skips_invalid_utf8_lines_as_not_text():
    result = parse_blocklist([b"\xff\xfeads.example.com\n", b"ok.example.com\n"])
    assert result.domains == ["ok.example.com"]
    assert result.skipped == {"not text": 1}


def test_it_skips_long_lines_without_looking_inside_them(monkeypatch):
    seen = []
    real = formats.normalize_domain
    monkeypatch.setattr(formats, "normalize_domain", lambda value, **kw: seen.append(value) or real(value, **kw))
    result = parse_blocklist(["a" * 10_000, b"0.0.0.0 " + b"b" * 1_000_000, "ok.example.com"])
    assert result.domains == ["ok.example.com"]
    assert result.skipped == {"line too long": 2}
    assert seen == ["ok.example.com"]


def test_it_never_raises_on_random_bytes():
    rng = random.Random(1234)
    lines = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80))) + b"\n" for _ in range(2000)]
    lines += [b"||ads.example.com^$" + bytes(rng.randrange(256) for _ in range(20)) for _ in range(200)]
    for fmt in ("auto", "hosts", "domains", "adblock"):
        result = parse_blocklist(lines, fmt)
        assert result.lines == 2200
        assert result.comments + sum(result.skipped.values()) + len(result.domains) >= 1


def test_it_accepts_lines_with_and_without_line_endings():
    result = parse_blocklist(["a.example.com\n", "b.example.com"])
    assert result.domains == ["a.example.com", "b.example.com"]
    assert result.lines == 2


# --- reading files -------------------------------------------------------------------------------


def test_binary_lines_are_the_same_across_chunk_boundaries():
    text = b"".join(b"0.0.0.0 host%d.example.com\r\n" % i for i in range(10_000)) + b"last.example.com"
    assert list(iter_binary_lines(io.BytesIO(text))) == text.split(b"\n")


def test_binary_lines_cut_an_endless_line_to_a_bounded_size():
    text = b"x" * 5_000_000 + b"\nads.example.com\n"
    lines = list(iter_binary_lines(io.BytesIO(text)))
    assert max(len(line) for line in lines) <= MAX_LINE_LENGTH + 1 + 2**16
    assert len(lines[0]) > MAX_LINE_LENGTH
    assert lines[-1] == b"ads.example.com"


def test_it_reads_a_file_from_disk(tmp_path):
    path = tmp_path / "hosts.txt"
    path.write_bytes(b"\xef\xbb\xbf# test\r\n127.0.0.1 localhost\r\n0.0.0.0 ads.example.com\r\n")
    result = read_blocklist_file(path)
    assert result.format == "hosts"
    assert result.domains == ["ads.example.com"]
    assert result.lines == 3


@pytest.mark.parametrize("start", [b"<!DOCTYPE html>\n<html>", b"\n  <html lang=en>\n<body>"])
def test_it_rejects_a_file_that_looks_like_an_html_page(tmp_path, start):
    path = tmp_path / "list.txt"
    path.write_bytes(start + b"\nads.example.com\n")
    with pytest.raises(BlocklistError, match="looks like an HTML page"):
        read_blocklist_file(path)


def test_it_rejects_a_file_without_a_valid_domain(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# only comments\nnot a domain\n")
    with pytest.raises(BlocklistError, match=r"no valid domain .*1 malformed line"):
        read_blocklist_file(path)


def test_it_rejects_an_empty_file(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"")
    with pytest.raises(BlocklistError, match="is empty"):
        read_blocklist_file(path)


def test_it_rejects_a_utf16_file(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("ads.example.com\n", encoding="utf-16")
    with pytest.raises(BlocklistError, match="UTF-16"):
        read_blocklist_file(path)


def test_it_reports_a_missing_file_as_a_blocklist_error(tmp_path):
    with pytest.raises(BlocklistError, match=r"cannot read .*No such file"):
        read_blocklist_file(tmp_path / "missing.txt")


# --- guard rails: public suffixes, look-alikes ---------------------------------------------------


def test_it_skips_a_line_that_would_block_a_whole_public_suffix_and_counts_it():
    lines = ["co.uk", "0.0.0.0 com.au", "||x.ck^", "ads.co.uk", "com", "ads.example.com"]
    result = parse_blocklist(lines, "adblock")
    assert result.domains == ["ads.co.uk", "ads.example.com"]
    # A single label such as "com" never was a valid entry; co.uk, com.au and x.ck are ICANN suffixes.
    assert result.skipped == {"public suffix": 3, "not a DNS rule": 1}


def test_it_keeps_private_suffixes_that_lists_block_on_purpose():
    result = parse_blocklist(["github.io", "duckdns.org", "evil.github.io"], "domains")
    assert result.domains == ["github.io", "duckdns.org", "evil.github.io"]
    assert not result.skipped


def test_an_adblock_exception_for_a_public_suffix_allows_nothing():
    result = parse_blocklist(["||ads.example.com^", "@@||co.uk^"], "adblock")
    assert result.allowed == []
    assert result.skipped == {"public suffix": 1}


@pytest.mark.parametrize(
    "lookalike",
    [
        "ⓖⓞⓞⓖⓛⓔ.com",  # circled letters: IDNA 2003 maps them to google.com
        "\uff47\uff4f\uff4f\uff47\uff4c\uff45.com",  # full-width letters
        "goo\u00adgle.com",  # a soft hyphen, which IDNA 2003 drops
        "g\u200boogle.com",  # a zero-width space
    ],
    ids=["circled", "fullwidth", "soft-hyphen", "zero-width-space"],
)
def test_it_never_stores_a_lookalike_as_the_name_it_imitates(lookalike):
    result = parse_blocklist([lookalike, f"||{lookalike}^", f"0.0.0.0 {lookalike}"], "adblock")
    assert result.domains == []
    assert result.skipped == {"not a DNS rule": 1, "invalid domain": 2}


def test_a_real_internationalised_name_is_still_stored_in_punycode():
    result = parse_blocklist(["bücher.example", "BÜCHER.example", "straße.de", "bu\u0308cher.example"], "domains")
    # IDNA 2008: ß is a letter of its own (IDNA 2003 made it "strasse"); a combining accent is joined first.
    assert result.domains == ["xn--bcher-kva.example", "xn--strae-oqa.de"]
    assert result.skipped == {"duplicate": 2}


# --- guard rails: what is not a list -------------------------------------------------------------


def random_text_lines(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_ !?#$%&/=*+,;:'\"()[]{}<>|@^~"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 120))) for _ in range(count)]


def test_random_text_is_mostly_junk():
    result = parse_blocklist(random_text_lines(5000))
    assert result.mostly_junk
    assert result.junk > 0.9 * result.considered


def test_random_bytes_are_mostly_junk():
    rng = random.Random(99)
    data = rng.randbytes(1_000_000)
    result = parse_blocklist(iter_binary_lines(io.BytesIO(data)))
    assert result.mostly_junk
    assert result.skipped["not text"] > 0.9 * result.considered


def test_a_short_hand_made_list_with_typos_is_not_junk():
    # Three typos of five entries: more than half, but too few to call the file junk.
    result = parse_blocklist(["ads.example.com", "ads,example.com", "tracker.example.net", "a b c", "-x-.com"])
    assert result.junk == 3
    assert not result.mostly_junk


def test_a_hosts_file_with_long_comment_banners_is_not_junk():
    lines = ["#" * 60, "# Title: a list", "#" * 60, "", "127.0.0.1 localhost", "::1 ip6-localhost"]
    lines += [f"# section {i}\n0.0.0.0 ads{i}.example.com" for i in range(50)]
    result = parse_blocklist("\n".join(lines).split("\n"))
    assert len(result.domains) == 50
    assert not result.mostly_junk


def test_an_adblock_list_made_mostly_of_browser_rules_is_not_junk():
    """EasyList's shape (measured on the real one: 76,536 lines, 23,792 cosmetic, ~1% unreadable)."""
    lines = ["[Adblock Plus 2.0]", "! Title: EasyList-like"]
    for i in range(300):
        lines += [
            f"example{i}.com##.ad-banner",
            f"##.sponsored-{i}",
            f"example{i}.org#@#.ad",
            f"/banners/{i}/ad.js",
            f"|https://ads{i}.example.net/pixel",
            f"||ads{i}.example.com^$third-party",
            f"||tracker{i}.example.net^$script,domain=example{i}.org",
            f"-ad-banner-{i}.",
        ]
    result = parse_blocklist(lines)
    assert result.format == "adblock"
    assert len(result.domains) == 300
    assert not result.mostly_junk


def test_a_junk_result_is_refused_with_its_counts_and_top_reasons():
    result = parse_blocklist(["ads.example.com"] + ["a b", "c d e", "x,y", "!!!"] * 10, "domains")
    with pytest.raises(BlocklistError) as refused:
        check_mostly_entries(result, "list.txt")
    message = str(refused.value)
    assert message.startswith("list.txt does not look like a blocklist: 40 of its 41 entries are unreadable")
    assert "skipped 20 malformed line, 20 invalid domain" in message
    assert "\n" not in message


def test_a_latin1_comment_is_a_comment_not_junk():
    result = parse_blocklist([b"# Liste f\xfcr Werbung\n", b"! Auteur: Ren\xe9\n", b"ads.example.com\n"])
    assert result.domains == ["ads.example.com"]
    assert (result.comments, result.skipped) == (2, {})


def test_adblock_rules_in_a_list_read_as_plain_are_not_junk():
    # URLhaus's list starts with addresses and plain names and ends with ||host/path^ rules.
    lines = ["1.2.3.4", "5.6.7.8"] * 150 + ["bad.example.com"] + ["||github.com/x/releases/a.zip^$all"] * 50
    result = parse_blocklist(lines)
    assert result.format == "domains"
    assert result.skipped["Adblock rule"] == 50
    assert not result.mostly_junk


# --- guard rails: size limits --------------------------------------------------------------------


def test_it_stops_reading_at_the_name_limit():
    consumed = []

    def lines():
        for i in range(1_000_000):
            consumed.append(i)
            yield f"host{i}.example.com"

    with pytest.raises(BlocklistTooLarge, match="holds more than 100 names") as refused:
        parse_blocklist(lines(), "domains", max_names=100)
    assert refused.value.limit == "names"
    assert len(consumed) == 101


def test_duplicates_and_skipped_lines_do_not_count_towards_the_name_limit():
    lines = ["a.example.com"] * 50 + ["bad name"] * 50 + ["b.example.com", "@@||c.example.com^"]
    result = parse_blocklist(lines, "adblock", max_names=3)
    assert (result.domains, result.allowed) == (["a.example.com", "b.example.com"], ["c.example.com"])
    with pytest.raises(BlocklistTooLarge):
        parse_blocklist([*lines, "d.example.com"], "adblock", max_names=3)


def test_it_stops_reading_a_stream_at_the_byte_limit():
    class Endless(io.RawIOBase):
        reads = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            Endless.reads += 1
            buffer[:] = b"a.example.com\n" * (len(buffer) // 14) + b"\n" * (len(buffer) % 14)
            return len(buffer)

    with pytest.raises(BlocklistTooLarge, match="over the 200,000-byte limit"):
        read_blocklist(io.BufferedReader(Endless()), display="stdin", max_bytes=200_000)
    assert Endless.reads < 10


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.txt"
    path.write_text("ads.example.com\n" * 1000)
    monkeypatch.setattr(formats, "parse_blocklist", lambda *a, **kw: pytest.fail("the file was read"))
    with pytest.raises(BlocklistTooLarge, match=r"big\.txt is 16,000 bytes, over the 1,024-byte limit"):
        read_blocklist_file(path, max_bytes=1024)


def test_reading_a_file_refuses_junk(tmp_path):
    path = tmp_path / "junk.txt"
    path.write_text("\n".join(["ads.example.com", *random_text_lines(500)]))
    with pytest.raises(BlocklistError, match=r"junk\.txt does not look like a blocklist"):
        read_blocklist_file(path)
