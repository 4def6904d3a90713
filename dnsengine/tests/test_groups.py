"""Client groups on the DNS path: per-group answers over real sockets, windows, shared lists, caches."""

from __future__ import annotations

from datetime import datetime, time
from time import monotonic, sleep

import pytest

from dnsengine.core.clients import ClientDirectory
from dnsengine.core.groups import GroupAssignment, Window, seconds_to_next_boundary
from dnsengine.core.rules import Decision
from dnsengine.core.stats import EngineStats
from dnsengine.models import AllowedDomain, BlockedDomain, Blocklist, Client, ClientGroup, GroupSchedule, default_group
from dnsengine.runtime.watcher import snapshot_load
from dnsengine.services import config_generation_bump
from gloryhole_site.testing.dnsclient import answers, query_from
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.fake_upstream import Behaviour, FakeUpstream

UPSTREAM_A = ["A 192.0.2.1"]
BLOCKED_A = ["A 0.0.0.0"]


class Sink:
    def __init__(self) -> None:
        self.entries = []

    def log_async(self, entry) -> bool:
        self.entries.append(entry)
        return True


def ask(engine, name: str, source: str) -> list[str]:
    """A query sent from `source` (an address in 127.0.0.0/8), as a device at that address would."""
    return answers(query_from(source, engine.port, name))


def listed(list_name: str, *domains: str, groups=()) -> Blocklist:
    blocklist = Blocklist.objects.create(name=list_name)
    BlockedDomain.objects.bulk_create([BlockedDomain(blocklist=blocklist, domain=d) for d in domains])
    blocklist.groups.set(groups)
    config_generation_bump()
    return blocklist


def test_clients_in_different_groups_get_different_answers_and_the_log_says_whose(make_engine, engine_config):
    sink = Sink()
    kids = ClientGroup.objects.create(name="kids")
    listed("social", "social.example", groups=[kids])
    listed("ads", "ads.example")  # no groups: everyone's
    Client.objects.create(name="tablet", ip="127.0.0.2", group=kids)
    engine = make_engine(engine_config, query_logger=sink)
    engine_reload(engine)

    assert ask(engine, "social.example", "127.0.0.2") == BLOCKED_A
    assert ask(engine, "social.example", "127.0.0.3") == UPSTREAM_A
    assert ask(engine, "social.example", "127.0.0.2") == BLOCKED_A  # from the rendered replies now
    assert ask(engine, "social.example", "127.0.0.3") == UPSTREAM_A  # from the cache
    assert ask(engine, "ads.example", "127.0.0.2") == BLOCKED_A
    assert ask(engine, "ads.example", "127.0.0.3") == BLOCKED_A

    # Logged after each reply is sent: wait for the last row.
    deadline = monotonic() + 5
    while len(sink.entries) < 6 and monotonic() < deadline:
        sleep(0.01)
    by_client = {(e.client, e.domain, e.status): e for e in sink.entries}
    tablet = by_client["127.0.0.2", "social.example", "blocked"]
    assert (tablet.client_name, tablet.client_group, tablet.rule) == ("tablet", "kids", "list:social (group kids)")
    other = by_client["127.0.0.3", "social.example", "forwarded"]
    assert (other.client_name, other.client_group) == ("", "Default")
    assert by_client["127.0.0.3", "ads.example", "blocked"].rule == "list:ads (group Default)"


def test_a_cidr_client_and_the_longest_prefix_decide_the_group(make_engine, engine_config):
    kids, guests = ClientGroup.objects.create(name="kids"), ClientGroup.objects.create(name="guests")
    listed("social", "social.example", groups=[kids])
    Client.objects.create(name="lan", cidr="127.0.0.0/8", group=guests)
    Client.objects.create(name="kids-net", cidr="127.0.0.0/30", group=kids)  # .0 - .3
    engine = make_engine(engine_config)
    engine_reload(engine)

    assert ask(engine, "social.example", "127.0.0.2") == BLOCKED_A
    assert ask(engine, "social.example", "127.0.0.5") == UPSTREAM_A


def test_the_cache_does_not_serve_a_non_blocking_groups_forwarded_answer_to_a_blocking_group(
    make_engine, engine_config
):
    work = ClientGroup.objects.create(name="work", blocking_enabled=False)
    listed("ads", "ads.example")
    Client.objects.create(name="laptop", ip="127.0.0.2", group=work)
    engine = make_engine(engine_config)
    engine_reload(engine)

    assert ask(engine, "ads.example", "127.0.0.2") == UPSTREAM_A  # forwarded and cached for "work"
    assert ask(engine, "ads.example", "127.0.0.2") == UPSTREAM_A
    assert ask(engine, "ads.example", "127.0.0.3") == BLOCKED_A
    assert ask(engine, "ads.example", "127.0.0.3") == BLOCKED_A


def test_groups_on_the_same_upstreams_share_an_answer_and_each_keeps_its_own_decision(
    make_engine, engine_config, upstream
):
    work = ClientGroup.objects.create(name="work", blocking_enabled=False)
    kids = ClientGroup.objects.create(name="kids")
    listed("ads", "ads.example")
    Client.objects.create(name="laptop", ip="127.0.0.2", group=work)
    Client.objects.create(name="tablet", ip="127.0.0.4", group=kids)
    config_generation_bump()
    engine = make_engine(engine_config)
    engine_reload(engine)

    # A name nobody blocks is fetched once for the three groups.
    assert ask(engine, "news.example", "127.0.0.2") == UPSTREAM_A
    assert ask(engine, "news.example", "127.0.0.3") == UPSTREAM_A
    assert ask(engine, "news.example", "127.0.0.4") == UPSTREAM_A
    assert upstream.received == 1
    # A name the non-blocking group got from upstream stays blocked for the others,
    # first from the cache hit, then from their rendered replies.
    assert ask(engine, "ads.example", "127.0.0.2") == UPSTREAM_A
    for _ in range(2):
        assert ask(engine, "ads.example", "127.0.0.3") == BLOCKED_A
        assert ask(engine, "ads.example", "127.0.0.4") == BLOCKED_A
    assert ask(engine, "ads.example", "127.0.0.2") == UPSTREAM_A
    assert upstream.received == 2


class ReloadOnSend:
    """A UDP transport that reloads the resolver while it sends: a reload racing a query."""

    proto = "udp"

    def __init__(self, resolver, snapshot) -> None:
        self.resolver, self.snapshot, self.sent = resolver, snapshot, []

    def send(self, reply: bytes, addr) -> None:
        self.sent.append(reply)
        self.resolver.apply_snapshot(self.snapshot)


@pytest.mark.django_db
def test_a_reply_decided_before_a_reload_is_not_remembered_after_it():
    import dns.message

    from dnsengine.core.cache import ReplyCache, TtlPolicy
    from dnsengine.core.options import parse_blocking_mode
    from dnsengine.core.resolver import Resolver

    listed("ads", "ads.example")
    resolver = Resolver(forwarder=None, blocking=parse_blocking_mode("null"), block_ttl=60, cache=ReplyCache(100),
                        ttl_policy=TtlPolicy(), stats=EngineStats())  # fmt: skip
    resolver.apply_snapshot(snapshot_load(1))
    Blocklist.objects.all().delete()  # the reload that races the query unblocks the name
    transport = ReloadOnSend(resolver, snapshot_load(2))

    assert resolver.handle(dns.message.make_query("ads.example", "A").to_wire(), "127.0.0.1", transport, None)

    assert len(transport.sent) == 1  # answered under the rules it arrived under...
    assert resolver._rendered == {}  # ...but not remembered for the queries after the reload


def test_a_time_window_switches_a_list_on_and_off(make_engine, engine_config):
    kids = ClientGroup.objects.create(name="kids")
    social = listed("social", "social.example")  # in a schedule, no groups: only for its windows
    # Every day, 21:00 to 07:00 the next morning.
    GroupSchedule.objects.create(group=kids, blocklist=social, start=time(21), end=time(7))
    Client.objects.create(name="tablet", ip="127.0.0.2", group=kids)
    engine = make_engine(engine_config)
    now = [datetime(2026, 3, 2, 20, 59)]
    engine.watcher.local_now = lambda: now[0]
    engine.watcher.generation = None  # reload on the test's clock
    engine_reload(engine)

    assert ask(engine, "social.example", "127.0.0.2") == UPSTREAM_A
    # The watcher's own thread also applies the windows when it wakes, so it may be the
    # one that rebuilds at a boundary: count rebuilds, whoever made them.
    changes = engine.watcher.window_changes
    now[0] = datetime(2026, 3, 2, 21, 0)
    engine.watcher.apply_windows()
    assert engine.watcher.window_changes == changes + 1
    assert ask(engine, "social.example", "127.0.0.2") == BLOCKED_A
    assert ask(engine, "social.example", "127.0.0.3") == UPSTREAM_A  # another group: never
    now[0] = datetime(2026, 3, 3, 6, 59)
    assert not engine.watcher.apply_windows()  # still open: nothing rebuilt
    assert engine.watcher.window_changes == changes + 1
    assert ask(engine, "social.example", "127.0.0.2") == BLOCKED_A
    now[0] = datetime(2026, 3, 3, 7, 0)
    engine.watcher.apply_windows()
    assert engine.watcher.window_changes == changes + 2
    assert ask(engine, "social.example", "127.0.0.2") == UPSTREAM_A


@pytest.mark.django_db
def test_a_list_shared_by_groups_is_stored_once_and_each_group_gets_its_own_first_list():
    Blocklist.objects.all().delete()  # the bundled lists of migration 0003
    x, y = ClientGroup.objects.create(name="x"), ClientGroup.objects.create(name="y")
    listed("a-list", "both.example", "only-a.example", groups=[y])
    listed("b-list", "both.example", "only-b.example", groups=[x, y])
    Client.objects.create(name="x1", ip="10.0.0.1", group=x)
    Client.objects.create(name="y1", ip="10.0.0.2", group=y)

    snapshot = snapshot_load()

    default, px, py = snapshot.policies
    assert (px.group, py.group) == ("x", "y")
    assert px.matcher.blocked is py.matcher.blocked is default.matcher.blocked
    assert px.matcher.size == 3  # both.example once, for both lists and both groups
    assert px.matcher.match("both.example") == Decision("block", "list:b-list (group x)")
    assert py.matcher.match("both.example") == Decision("block", "list:a-list (group y)")
    assert px.matcher.match("only-a.example") is None
    assert default.matcher.match("both.example") is None
    assert snapshot.policies[snapshot.assignment.policy_for("10.0.0.2")] is py


@pytest.mark.django_db
def test_a_parent_on_a_groups_list_blocks_below_a_name_only_another_groups_list_has():
    Blocklist.objects.all().delete()
    kids, tv = ClientGroup.objects.create(name="kids"), ClientGroup.objects.create(name="tv")
    listed("social", "example.com", groups=[kids])
    listed("telemetry", "ads.example.com", groups=[tv])
    Client.objects.create(name="tablet", ip="10.0.0.1", group=kids)
    Client.objects.create(name="tv", ip="10.0.0.2", group=tv)

    snapshot = snapshot_load()
    _, kids_policy, tv_policy = snapshot.policies

    assert kids_policy.matcher.match("ads.example.com") == Decision("block", "list:social (group kids)")
    assert kids_policy.matcher.match("x.ads.example.com") == Decision("block", "list:social (group kids)")
    assert tv_policy.matcher.match("ads.example.com") == Decision("block", "list:telemetry (group tv)")
    assert tv_policy.matcher.match("example.com") is None


@pytest.mark.django_db
def test_allow_entries_follow_their_groups():
    x = ClientGroup.objects.create(name="x")
    listed("ads", "ads.example")
    AllowedDomain.objects.create(domain="ads.example").groups.set([x])

    default, px = snapshot_load().policies

    assert px.matcher.match("ads.example") == Decision("allow", "allow:ads.example (group x)")
    assert default.matcher.match("ads.example").action == "block"


@pytest.mark.django_db
def test_with_only_the_default_group_there_is_one_matcher_and_nothing_to_look_up():
    listed("ads", "ads.example")
    directory = ClientDirectory()
    Client.objects.create(name="tv", ip="10.0.0.9", group=default_group())

    snapshot = snapshot_load(directory=directory)

    assert snapshot.assignment is None and snapshot.policies == ()
    assert snapshot.group == "Default"
    assert snapshot.matcher.match("ads.example") == Decision("block", "list:ads")
    assert directory.name_for("10.0.0.9") == "tv"


# --- Unit level: windows and the client -> group lookup -----------------------------------


def test_a_window_across_midnight_belongs_to_the_day_it_starts():
    monday_only = Window(0, 0b0000001, 21 * 3600, 7 * 3600)
    assert monday_only.is_open(datetime(2026, 3, 2, 22, 0))  # Monday evening
    assert monday_only.is_open(datetime(2026, 3, 3, 6, 0))  # Tuesday morning, Monday's window
    assert not monday_only.is_open(datetime(2026, 3, 3, 22, 0))  # Tuesday evening
    assert not monday_only.is_open(datetime(2026, 3, 2, 6, 0))  # Monday morning: Sunday's window, not ticked
    day = Window(0, 0b1111111, 9 * 3600, 17 * 3600)
    assert day.is_open(datetime(2026, 3, 2, 9, 0)) and not day.is_open(datetime(2026, 3, 2, 17, 0))
    assert seconds_to_next_boundary([day], datetime(2026, 3, 2, 16, 59, 30)) == 30


class FakeDirectory:
    def __init__(self) -> None:
        self.version = 0
        self.macs: dict[str, str] = {}

    def mac_for(self, ip: str) -> str:
        return self.macs.get(ip, "")


def test_the_group_lookup_is_exact_ip_then_longest_network_then_mac_then_default():
    directory = FakeDirectory()
    assignment = GroupAssignment(by_ip={"10.0.0.1": 1}, by_cidr=[("10.0.0.0/8", 2), ("10.0.0.0/24", 3)],
                                 by_mac={"aa:bb:cc:dd:ee:ff": 4}, default=0, directory=directory)  # fmt: skip
    assert assignment.policy_for("10.0.0.1") == 1
    assert assignment.policy_for("10.0.0.7") == 3
    assert assignment.policy_for("10.9.0.7") == 2
    assert assignment.policy_for("192.168.1.5") == 0
    directory.macs["192.168.1.5"] = "aa:bb:cc:dd:ee:ff"
    assert assignment.policy_for("192.168.1.5") == 0  # remembered until the directory changes
    directory.version += 1
    assert assignment.policy_for("192.168.1.5") == 4


def test_the_remembered_groups_stay_bounded_under_a_flood_of_source_addresses():
    stats = EngineStats()
    assignment = GroupAssignment(by_cidr=[("10.0.0.0/8", 1)], max_size=1000, stats=stats)
    for i in range(100_000):
        assert assignment.policy_for(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}") == 1
    assert len(assignment) <= 1000
    assert stats.counters["client_group_cache_full"] >= 99


def test_a_group_with_its_own_upstreams_is_forwarded_to_them(make_engine, engine_config):
    with FakeUpstream("127.0.0.1", 0, Behaviour(address="192.0.2.77")) as company:
        work = ClientGroup.objects.create(name="work", upstreams=company.address)
        Client.objects.create(name="laptop", ip="127.0.0.2", group=work)
        config_generation_bump()
        engine = make_engine(engine_config)
        engine_reload(engine)

        assert ask(engine, "intranet.example", "127.0.0.2") == ["A 192.0.2.77"]
        assert ask(engine, "intranet.example", "127.0.0.3") == UPSTREAM_A
        assert ask(engine, "intranet.example", "127.0.0.2") == ["A 192.0.2.77"]  # its own cache entry
        assert company.received == 1
