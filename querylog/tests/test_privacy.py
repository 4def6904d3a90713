"""Privacy settings through the real engine: what rows and rollups hold at each level and with each exclusion."""

from __future__ import annotations

import time

import pytest

from dnsengine.models import BlockedDomain, Blocklist
from dnsengine.services import config_generation_bump
from gloryhole_site.testing.dnsclient import query_from
from gloryhole_site.testing.engine import engine_reload
from gloryhole_site.testing.querylog import make_entry
from querylog.logger.pool import QueryLogger
from querylog.logger.swappable import SwappableQueryLogger
from querylog.models import ClientRollup, DomainRollup, QueryLog, QueryRollup
from querylog.privacy import (
    HIDDEN_CLIENT,
    PrivacyPolicy,
    PrivacyState,
    client_truncate,
    parse_dont_log_clients,
    parse_dont_log_domains,
    privacy_filter,
)
from querylog.privacy_settings import privacy_settings_save

pytestmark = pytest.mark.integration


@pytest.fixture
def private_engine(make_engine, engine_config):
    """An engine whose query logger follows the saved privacy settings on each watcher poll."""
    state = PrivacyState()
    query_logger = SwappableQueryLogger(QueryLogger(50000, 1, 500, 0.05, "test-engine", privacy=state), privacy=state)
    query_logger.start()
    engine = make_engine(engine_config, query_logger=query_logger)
    engine.watcher.on_poll = query_logger.privacy_poll
    blocklist = Blocklist.objects.create(name="ads")
    BlockedDomain.objects.create(blocklist=blocklist, domain="ads.example.net")
    config_generation_bump()
    engine_reload(engine)
    yield engine, query_logger
    query_logger.close(timeout=10)


def run(private_engine, settings: dict, queries: list[tuple[str, str]]):
    """Save `settings`, let the engine poll them, send (client, name) queries, stop cleanly."""
    engine, query_logger = private_engine
    privacy_settings_save(settings)
    engine_reload(engine)
    for source, name in queries:
        query_from(source, engine.port, name)
    engine.stop()
    return query_logger.close(timeout=20)


QUERIES = [
    ("127.0.0.5", "a.example.com"),
    ("127.0.0.5", "ads.example.net"),
    ("127.0.0.6", "b.example.com"),
    ("127.0.0.7", "c.example.org"),
]


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def minute_total() -> int:
    return sum(QueryRollup.objects.values_list("count", flat=True))


def test_level_0_stores_everything(private_engine):
    report = run(private_engine, {"level": 0}, QUERIES)
    assert report.written == 4 and report.not_logged == 0
    assert sorted(QueryLog.objects.values_list("client", "domain")) == sorted(QUERIES)
    assert DomainRollup.objects.filter(domain="ads.example.net", status="blocked").get().count == 1
    assert minute_total() == 4


def test_level_1_stores_rows_without_domains_and_no_domain_rollups(private_engine):
    report = run(private_engine, {"level": 1}, QUERIES)
    assert report.written == 4 and report.not_logged == 0
    rows = list(QueryLog.objects.values_list("client", "domain", "status", "qtype"))
    assert sorted(rows) == sorted(
        [("127.0.0.5", "", "forwarded", "A"), ("127.0.0.5", "", "blocked", "A"),
         ("127.0.0.6", "", "forwarded", "A"), ("127.0.0.7", "", "forwarded", "A")]
    )  # fmt: skip
    assert not DomainRollup.objects.exists()
    assert ClientRollup.objects.get(client="127.0.0.5").count == 2
    assert ClientRollup.objects.get(client="127.0.0.5").blocked == 1
    assert minute_total() == 4


def test_level_2_hides_domains_and_clients(private_engine):
    report = run(private_engine, {"level": 2}, QUERIES)
    assert report.written == 4
    assert set(QueryLog.objects.values_list("client", "domain", "client_name")) == {(HIDDEN_CLIENT, "", "")}
    assert QueryLog.objects.filter(status="blocked").count() == 1
    assert not DomainRollup.objects.exists() and not ClientRollup.objects.exists()
    assert minute_total() == 4


def test_level_3_stores_no_rows_only_per_minute_totals(private_engine):
    _, query_logger = private_engine
    report = run(private_engine, {"level": 3}, QUERIES)
    assert not QueryLog.objects.exists()
    assert not DomainRollup.objects.exists() and not ClientRollup.objects.exists()
    assert dict(QueryRollup.objects.values_list("status", "count")) == {"forwarded": 3, "blocked": 1}
    # Nothing queued: every entry was counted at intake, none written, none dropped.
    assert report.written == 0 and report.dropped == 0 and report.unwritten == 0
    assert report.not_logged == 4 and query_logger.not_logged()["level"] == 4
    assert query_logger.privacy.tally.counted == 4  # counted on the DNS path, never queued


def test_anonymized_clients_are_stored_as_their_network(private_engine):
    report = run(private_engine, {"anonymize_clients": True}, QUERIES)
    assert report.written == 4
    assert set(QueryLog.objects.values_list("client", flat=True)) == {"127.0.0.0"}
    assert list(ClientRollup.objects.values_list("client", "count")) == [("127.0.0.0", 4)]


def test_dont_log_lists_keep_clients_and_domains_out_of_rows_and_top_lists(private_engine):
    report = run(
        private_engine,
        {"dont_log_clients": "127.0.0.7", "dont_log_domains": "*.example.com"},
        QUERIES,
    )
    assert list(QueryLog.objects.values_list("client", "domain")) == [("127.0.0.5", "ads.example.net")]
    assert report.written == 1 and report.not_logged == 3
    _, query_logger = private_engine
    assert query_logger.not_logged() == {"level": 0, "client": 1, "domain": 2, "not_blocked": 0}
    assert list(ClientRollup.objects.values_list("client", flat=True)) == ["127.0.0.5"]
    assert list(DomainRollup.objects.values_list("domain", flat=True)) == ["ads.example.net"]
    assert minute_total() == 4  # the dashboard's totals still count every answered query


def test_log_blocked_only_stores_only_blocked_queries(private_engine):
    report = run(private_engine, {"log_blocked_only": True}, QUERIES)
    assert list(QueryLog.objects.values_list("domain", "status")) == [("ads.example.net", "blocked")]
    assert report.written == 1 and report.not_logged == 3
    assert minute_total() == 4


def test_a_level_change_reaches_a_running_engine_on_its_next_poll(private_engine):
    engine, query_logger = private_engine
    query_from("127.0.0.5", engine.port, "before.example.com")
    # Still queued, it would be stored as the new level says (the writer applies the
    # policy in force): wait until it is written.
    wait_until(lambda: query_logger.written == 1)
    privacy_settings_save({"level": 3})
    engine_reload(engine)
    query_from("127.0.0.5", engine.port, "after.example.com")
    privacy_settings_save({"level": 0})
    engine_reload(engine)
    query_from("127.0.0.5", engine.port, "again.example.com")
    engine.stop()
    report = query_logger.close(timeout=20)
    assert sorted(QueryLog.objects.values_list("domain", flat=True)) == ["again.example.com", "before.example.com"]
    assert report.written == 2 and report.not_logged == 1 and report.dropped == 0
    assert minute_total() == 3


# -- the filter and its parts, without the engine ------------------------------------------


def test_ipv4_and_ipv6_are_truncated_to_their_prefix():
    assert client_truncate("192.168.1.20") == "192.168.1.0"
    assert client_truncate("2001:db8:1:2:3::5") == "2001:db8:1::"
    assert client_truncate("192.168.1.20", v4_prefix=16) == "192.168.0.0"
    assert client_truncate("2001:db8:1:2:3::5", v6_prefix=64) == "2001:db8:1:2::"
    assert client_truncate("::ffff:10.1.2.3") == "10.1.2.0"


def test_ipv6_clients_are_anonymized_in_stored_rows(loggers, transactional_db):
    state = PrivacyState(PrivacyPolicy(anonymize=True))
    logger = QueryLogger(100, 1, 10, 0.02, privacy=state).start()
    loggers.append(logger)
    logger.log_async(make_entry(1, client="2001:db8:aa:bb::1", client_name="laptop"))
    logger.log_async(make_entry(2, client="10.9.8.7"))
    assert logger.close(10).written == 2
    assert sorted(QueryLog.objects.values_list("client", "client_name")) == [("10.9.8.0", ""), ("2001:db8:aa::", "")]


def test_dont_log_by_group_name_and_cidr():
    policy = PrivacyPolicy(clients=parse_dont_log_clients("10.0.0.0/8, Kids"))
    entries = [make_entry(1, client="10.1.1.1"), make_entry(2, client="192.0.2.1", client_group="Kids"),
               make_entry(3, client="192.0.2.1")]  # fmt: skip
    result = privacy_filter(policy, entries)
    assert [e.client for e in result.rows] == ["192.0.2.1"] and result.not_logged == {"client": 2}


def test_domain_lists_match_exact_names_and_suffixes():
    policy = PrivacyPolicy(domains=parse_dont_log_domains("bank.example\n*.health.example"))
    assert policy.domain_excluded("bank.example") and not policy.domain_excluded("www.bank.example")
    assert policy.domain_excluded("health.example") and policy.domain_excluded("a.b.health.example")
    assert not policy.domain_excluded("nothealth.example")


@pytest.mark.parametrize(
    "text, message",
    [("10.0.0.300", "not an IP address"), ("10.0.0.0/33", "not an IP address"), ("x" * 101, "at most 100")],
)
def test_bad_client_lists_are_refused_with_the_item(text, message):
    with pytest.raises(ValueError, match=message):
        parse_dont_log_clients(text)


@pytest.mark.parametrize("text", ["exa mple.com", "*.", "a..b", "https://x.example/"])
def test_bad_domain_lists_are_refused(text):
    with pytest.raises(ValueError, match="is not a domain"):
        parse_dont_log_domains(text)


def test_metrics_count_entries_not_logged_by_reason_apart_from_drops():
    from prometheus_client import generate_latest

    from dnsengine.runtime.metrics import metrics_registry
    from gloryhole_site.testing.querylog import RecordingWriter

    state = PrivacyState()
    writer = RecordingWriter()
    query_logger = SwappableQueryLogger(QueryLogger(100, 1, 10, 0.02, writer=writer, privacy=state), privacy=state)
    query_logger.start()
    query_logger.privacy_apply(PrivacyPolicy(blocked_only=True))
    for i in range(3):
        query_logger.log_async(make_entry(i, status="blocked" if i == 0 else "forwarded"))
    report = query_logger.close(10)
    assert (report.written, report.dropped, report.not_logged) == (1, 0, 2)
    assert [e.status for e in writer.written] == ["blocked"]
    text = generate_latest(metrics_registry(query_logger)).decode()
    assert 'dns_query_log_not_logged_total{reason="not_blocked"} 2.0' in text
    assert "dns_query_log_drops_total 0.0" in text
