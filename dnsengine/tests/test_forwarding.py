"""Conditional forwarding: names under a rule's suffix go to its upstreams, over real sockets on loopback."""

from __future__ import annotations

import dataclasses
import time

import pytest
from django.core.exceptions import ValidationError

from dnsengine.core.forwarding import ForwardingRules, Route
from dnsengine.core.options import ConfigError, parse_upstreams
from dnsengine.models import Client, ClientGroup, ForwardingRule, LocalRecord
from dnsengine.runtime.watcher import snapshot_load
from dnsengine.services import config_generation_current
from gloryhole_site.testing.dnsclient import Client as DnsClient
from gloryhole_site.testing.dnsclient import answers, query_from, rcode
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.fake_upstream import Behaviour, FakeUpstream
from gloryhole_site.testing.ptr_responder import PtrResponder
from gloryhole_site.testing.querylog import RecordingSink

DEFAULT_A = ["A 192.0.2.1"]  # what the `upstream` fixture answers
ROUTER_A = ["A 192.0.2.53"]
CORP_A = ["A 192.0.2.99"]


def rules(*suffixes: str) -> ForwardingRules:
    return ForwardingRules(Route(s, None, (), f"forward:{s}") for s in suffixes)


# --- the table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("nas.lan", "lan"),
        ("lan", "lan"),
        ("printer.corp.lan", "corp.lan"),
        ("corp.lan", "corp.lan"),
        ("xcorp.lan", "lan"),  # a suffix is whole labels
        ("1.1.168.192.in-addr.arpa", "168.192.in-addr.arpa"),
        ("example.com", None),
        ("lan.example.com", None),
        ("", None),
        ("arpa", None),
    ],
)
def test_the_most_specific_suffix_decides(name, suffix):
    table = rules("lan", "corp.lan", "168.192.in-addr.arpa")
    route = table.route(name)
    assert (route.suffix if route is not None else None) == suffix


def test_a_client_address_finds_the_rule_of_its_reverse_zone():
    table = rules("168.192.in-addr.arpa", "d.f.ip6.arpa")
    assert table.reverse_route("192.168.1.7").suffix == "168.192.in-addr.arpa"
    assert table.reverse_route("fd00::7").suffix == "d.f.ip6.arpa"
    assert table.reverse_route("10.0.0.1") is None
    assert table.reverse_route("not an address") is None


# --- the model -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_rule_is_normalised_like_other_domains():
    rule = ForwardingRule(domain=" Corp.Example.COM. ", upstreams=" 192.168.1.1 ,[::1]:5353")
    rule.full_clean()
    assert rule.domain == "corp.example.com"
    assert rule.upstreams == "192.168.1.1:53, [::1]:5353"
    for zone in ("168.192.in-addr.arpa", "home.arpa", "lan"):
        ForwardingRule(domain=zone, upstreams="192.168.1.1").full_clean()


@pytest.mark.django_db
@pytest.mark.parametrize("upstreams", ["router.lan", "192.168.1.1:http", "192.168.1.1:70000", "", "[::1"])
def test_a_bad_upstream_gets_the_message_the_environment_parsing_gives(upstreams):
    with pytest.raises(ConfigError) as env_error:
        parse_upstreams(upstreams, setting="upstreams")
    with pytest.raises(ValidationError) as form_error:
        ForwardingRule(domain="lan", upstreams=upstreams).full_clean()
    assert form_error.value.message_dict["upstreams"] == [str(env_error.value)]


@pytest.mark.django_db
@pytest.mark.parametrize("domain", ["", "bad domain", "-x.lan", "localhost", "a.localhost", "invalid"])
def test_a_rule_for_a_bad_or_never_forwarded_domain_is_refused(domain):
    with pytest.raises(ValidationError) as error:
        ForwardingRule(domain=domain, upstreams="192.168.1.1").full_clean()
    assert "domain" in error.value.message_dict


@pytest.mark.django_db
def test_saving_or_deleting_a_rule_bumps_the_config_generation():
    before = config_generation_current()
    rule = ForwardingRule.objects.create(domain="lan", upstreams="192.168.1.1:53")
    assert config_generation_current() > before
    before = config_generation_current()
    rule.delete()
    assert config_generation_current() > before


@pytest.mark.django_db
def test_the_snapshot_carries_the_enabled_rules_only():
    ForwardingRule.objects.create(domain="lan", upstreams="192.168.1.1:53")
    ForwardingRule.objects.create(domain="corp.lan", upstreams="10.0.0.1:53", enabled=False)
    # Written around the model's validation: skipped, the rest still load.
    ForwardingRule.objects.filter(domain="lan").update(upstreams="192.168.1.1:53")
    ForwardingRule.objects.bulk_create([ForwardingRule(domain="broken.lan", upstreams="router")])

    snapshot = snapshot_load(1)

    assert sorted(snapshot.forwarding.routes) == ["lan"]
    assert snapshot.forwarding.route("a.corp.lan").log_rule == "forward:lan"
    ForwardingRule.objects.all().delete()
    assert snapshot_load(2).forwarding is None


# --- over real sockets -----------------------------------------------------------------


@pytest.fixture
def router():
    with FakeUpstream("127.0.0.1", 0, Behaviour(address="192.0.2.53")) as server:
        yield server


@pytest.fixture
def corp():
    with FakeUpstream("127.0.0.1", 0, Behaviour(address="192.0.2.99")) as server:
        yield server


def forward(domain: str, *servers) -> ForwardingRule:
    return ForwardingRule.objects.create(domain=domain, upstreams=", ".join(s.address for s in servers))


@pytest.mark.integration
def test_names_under_a_rule_go_to_its_upstream_and_the_most_specific_rule_wins(
    make_engine, engine_config, upstream, router, corp
):
    forward("lan", router)
    forward("corp.lan", corp)
    engine = make_engine(engine_config)
    engine_reload(engine)
    client = DnsClient(engine.port)

    assert answers(client.query("nas.lan")) == ROUTER_A
    assert answers(client.query("printer.corp.lan")) == CORP_A
    assert answers(client.query("example.com")) == DEFAULT_A
    assert answers(client.query("nas.lan")) == ROUTER_A  # from the cache now

    assert router.queries == [("nas.lan", "A")]
    assert corp.queries == [("printer.corp.lan", "A")]
    assert upstream.queries == [("example.com", "A")]


@pytest.mark.integration
def test_a_rules_second_upstream_answers_when_its_first_is_silent(make_engine, engine_config, upstream, router):
    with FakeUpstream("127.0.0.1", 0, Behaviour(mode="silent")) as dead:
        forward("lan", dead, router)
        engine = make_engine(engine_config)
        engine_reload(engine)

        reply = DnsClient(engine.port).query("nas.lan", timeout=5.0)

    assert answers(reply) == ROUTER_A
    assert dead.received >= 1
    assert upstream.received == 0  # failover stays within the rule


@pytest.mark.integration
def test_a_private_reverse_lookup_goes_to_the_rule_with_one_and_is_nxdomain_locally_without(
    make_engine, engine_config, upstream, router
):
    engine = make_engine(engine_config)
    client = DnsClient(engine.port)

    assert rcode(client.query("1.1.168.192.in-addr.arpa", "PTR")) == "NXDOMAIN"
    assert router.received == upstream.received == 0

    forward("168.192.in-addr.arpa", router)
    engine_reload(engine)

    assert rcode(client.query("1.1.168.192.in-addr.arpa", "PTR")) == "NOERROR"  # the router's NODATA
    assert router.queries == [("1.1.168.192.in-addr.arpa", "PTR")]
    assert rcode(client.query("1.1.16.172.in-addr.arpa", "PTR")) == "NXDOMAIN"  # another private zone: as before
    assert upstream.received == 0


@pytest.mark.integration
def test_a_rule_for_a_single_label_suffix_forwards_it_and_other_single_labels_stay_home(
    make_engine, engine_config, upstream, router
):
    forward("nas", router)
    engine = make_engine(engine_config)
    engine_reload(engine)
    client = DnsClient(engine.port)

    assert answers(client.query("nas")) == ROUTER_A
    assert rcode(client.query("printer")) == "NXDOMAIN"
    assert router.queries == [("nas", "A")]
    assert upstream.received == 0


@pytest.mark.integration
def test_a_rule_added_while_running_applies_to_the_next_query(make_engine, engine_config, upstream, router):
    engine = make_engine(engine_config)
    client = DnsClient(engine.port)
    assert answers(client.query("nas.lan")) == DEFAULT_A

    rule = forward("lan", router)
    engine_reload(engine)
    assert answers(client.query("nas.lan")) == ROUTER_A  # not the default upstream's cached answer

    rule.enabled = False
    rule.save()
    engine_reload(engine)
    assert answers(client.query("nas.lan")) == DEFAULT_A
    assert router.received == 1
    assert upstream.received == 2


@pytest.mark.integration
def test_a_rule_wins_over_a_groups_own_upstreams(make_engine, engine_config, upstream, router, corp):
    work = ClientGroup.objects.create(name="work", upstreams=corp.address)
    Client.objects.create(name="laptop", ip="127.0.0.2", group=work)
    forward("lan", router)
    engine = make_engine(engine_config)
    engine_reload(engine)

    assert answers(query_from("127.0.0.2", engine.port, "nas.lan")) == ROUTER_A
    assert answers(query_from("127.0.0.2", engine.port, "intranet.example")) == CORP_A
    assert answers(query_from("127.0.0.3", engine.port, "nas.lan")) == ROUTER_A
    assert answers(query_from("127.0.0.3", engine.port, "intranet.example")) == DEFAULT_A


@pytest.mark.integration
def test_a_local_cname_into_a_rules_domain_is_completed_by_the_rules_upstream(
    make_engine, engine_config, upstream, router
):
    LocalRecord.objects.create(name="files.home.example", type="CNAME", value="nas.lan")
    forward("lan", router)
    engine = make_engine(engine_config)
    engine_reload(engine)

    reply = DnsClient(engine.port).query("files.home.example")

    assert answers(reply) == ["A 192.0.2.53", "CNAME nas.lan."]
    assert router.queries == [("nas.lan", "A")]
    assert upstream.received == 0


@pytest.mark.integration
def test_rules_on_one_upstream_list_share_one_forwarder(make_engine, engine_config, router):
    forward("lan", router)
    forward("home.arpa", router)
    engine = make_engine(engine_config)
    engine_reload(engine)

    routes = engine.resolver.snapshot.forwarding.routes
    assert routes["lan"].forwarder is routes["home.arpa"].forwarder is not None
    assert len(engine.rule_forwarders) == 1


@pytest.mark.integration
def test_past_the_bound_a_rule_uses_the_default_upstreams_and_is_counted(make_engine, engine_config, upstream,
                                                                          router, corp):  # fmt: skip
    forward("corp.lan", corp)
    forward("lan", router)
    engine = make_engine(dataclasses.replace(engine_config, forwarding_upstream_sets=1))
    engine_reload(engine)
    client = DnsClient(engine.port)

    assert answers(client.query("printer.corp.lan")) == CORP_A  # the first rule loaded got the one forwarder
    assert answers(client.query("nas.lan")) == DEFAULT_A
    assert len(engine.rule_forwarders) == 1
    assert engine.stats.counters["forwarding_upstreams_over_limit"] >= 1


@pytest.mark.integration
def test_the_log_row_says_which_rule_and_upstream_answered(make_engine, engine_config, router):
    sink = RecordingSink()
    forward("lan", router)
    engine = make_engine(engine_config, query_logger=sink)
    engine_reload(engine)

    DnsClient(engine.port).query("nas.lan")
    DnsClient(engine.port).query("example.com")
    entry = sink.last_for("nas.lan")
    other = sink.last_for("example.com")

    assert (entry.status, entry.rule, entry.upstream) == ("forwarded", "forward:lan", router.address)
    assert other.rule == ""


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_client_is_named_through_the_rule_for_its_reverse_zone(settings, make_engine, engine_config):
    settings.GLORYHOLE_CLIENT_PTR_RESOLVER = ""
    with PtrResponder({"127.0.0.2": "annas-phone.lan"}) as router:
        ForwardingRule.objects.create(domain="0.0.127.in-addr.arpa", upstreams=router.address)
        engine = make_engine(engine_config)
        engine_reload(engine)

        query_from("127.0.0.2", engine.port)
        deadline = time.monotonic() + 5
        while engine.clients.name_for("127.0.0.2") != "annas-phone.lan" and time.monotonic() < deadline:
            time.sleep(0.02)

    assert engine.clients.name_for("127.0.0.2") == "annas-phone.lan"
    assert router.asked == ["2.0.0.127.in-addr.arpa"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_without_a_rule_or_resolver_no_client_is_looked_up(settings, make_engine, engine_config):
    settings.GLORYHOLE_CLIENT_PTR_RESOLVER = ""
    with PtrResponder({"127.0.0.2": "annas-phone.lan"}) as router:
        ForwardingRule.objects.create(domain="9.9.10.in-addr.arpa", upstreams=router.address)
        engine = make_engine(engine_config)
        engine_reload(engine)
        query_from("127.0.0.2", engine.port)
        # The client-names thread has taken the client and found no rule for it.
        deadline = time.monotonic() + 5
        while "127.0.0.2" not in engine.client_names._ptr_due and time.monotonic() < deadline:
            time.sleep(0.02)

    assert "127.0.0.2" in engine.client_names._ptr_due

    assert router.asked == []
    assert engine.stats.counters.get("client_ptr_lookups", 0) == 0
