"""Deep CNAME inspection: a tracker behind a first-party name, over real sockets against a cloaking upstream."""

from __future__ import annotations

import dataclasses
import time

import pytest

from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, Client, ClientGroup
from dnsengine.services import config_generation_bump
from gloryhole_site.testing.dnsclient import answers, query_from
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.fake_upstream import Behaviour, FakeUpstream

CLOAKED = "metrics.shop.example"
TRACKER = "shop.example.eulerian.net"
CLOAKED_ANSWER = ["A 192.0.2.1", f"CNAME {TRACKER}."]
BLOCKED_A = ["A 0.0.0.0"]
TARGET_RULE = f"cname:{TRACKER} list:trackers"

pytestmark = pytest.mark.integration


class Sink:
    def __init__(self) -> None:
        self.entries = []

    def log_async(self, entry) -> bool:
        self.entries.append(entry)
        return True


@pytest.fixture
def cloaking():
    """An upstream that answers metrics.shop.example through a CNAME to shop.example.eulerian.net."""
    server = FakeUpstream("127.0.0.1", 0, Behaviour(cnames={CLOAKED: (TRACKER,)})).start()
    yield server
    server.stop()


@pytest.fixture
def config(engine_config, cloaking):
    from dnsengine.core.options import parse_upstreams

    return dataclasses.replace(engine_config, upstreams=parse_upstreams(cloaking.address))


def trackers(groups=()) -> Blocklist:
    blocklist = Blocklist.objects.create(name="trackers")
    BlockedDomain.objects.create(blocklist=blocklist, domain=TRACKER)
    blocklist.groups.set(groups)
    config_generation_bump()
    return blocklist


def ask(engine, name: str, source: str = "127.0.0.1") -> list[str]:
    return answers(query_from(source, engine.port, name))


def test_a_blocked_cname_target_blocks_the_asked_name_and_the_log_says_which_target(make_engine, config, cloaking):
    sink = Sink()
    trackers()
    engine = make_engine(config, query_logger=sink)
    engine_reload(engine)

    assert ask(engine, CLOAKED) == BLOCKED_A
    assert ask(engine, CLOAKED) == BLOCKED_A  # rendered reply
    assert ask(engine, CLOAKED.upper()) == BLOCKED_A  # another packet, the same question: the cache
    assert cloaking.received == 1
    # Logged after the reply is sent: wait for the last row.
    deadline = time.monotonic() + 5
    while len(sink.entries) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(e.domain, e.status, e.rule) for e in sink.entries] == [(CLOAKED, "blocked", TARGET_RULE)] * 3
    assert engine.cache.hits == 1


def test_a_chain_without_a_blocked_target_is_answered(make_engine, config):
    trackers()
    engine = make_engine(config)
    engine_reload(engine)

    assert ask(engine, "www.shop.example") == ["A 192.0.2.1"]


def test_an_allow_on_the_asked_name_wins_over_a_blocked_target(make_engine, config):
    trackers()
    AllowedDomain.objects.create(domain=CLOAKED)
    config_generation_bump()
    engine = make_engine(config)
    engine_reload(engine)

    assert ask(engine, CLOAKED) == CLOAKED_ANSWER


def test_an_allowed_target_does_not_block(make_engine, config):
    trackers()
    AllowedDomain.objects.create(domain=TRACKER)
    config_generation_bump()
    engine = make_engine(config)
    engine_reload(engine)

    assert ask(engine, CLOAKED) == CLOAKED_ANSWER


def test_inspection_switched_off_passes_the_chain(make_engine, config):
    trackers()
    engine = make_engine(dataclasses.replace(config, cname_inspection=False))
    engine_reload(engine)

    assert ask(engine, CLOAKED) == CLOAKED_ANSWER


@pytest.mark.parametrize("kids_first", [True, False])
def test_two_groups_that_disagree_about_a_target_share_one_upstream_answer(make_engine, config, cloaking,
                                                                            kids_first):  # fmt: skip
    sink = Sink()
    kids = ClientGroup.objects.create(name="kids")
    trackers(groups=[kids])  # only the kids' list
    Client.objects.create(name="tablet", ip="127.0.0.2", group=kids)
    config_generation_bump()
    engine = make_engine(config, query_logger=sink)
    engine_reload(engine)
    order = [("127.0.0.2", BLOCKED_A), ("127.0.0.3", CLOAKED_ANSWER)]
    if not kids_first:
        order.reverse()

    # First answers (upstream, then the shared cache), then the rendered replies, twice over.
    for _ in range(3):
        for source, expected in order:
            assert ask(engine, CLOAKED, source) == expected

    assert cloaking.received == 1
    kids_rows = [e for e in sink.entries if e.client == "127.0.0.2"]
    assert {(e.status, e.rule) for e in kids_rows} == {("blocked", f"{TARGET_RULE} (group kids)")}
    assert {e.status for e in sink.entries if e.client == "127.0.0.3"} <= {"forwarded", "cached"}
