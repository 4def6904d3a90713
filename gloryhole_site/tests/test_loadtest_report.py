"""The load test's row check: rows written plus entries kept out by the privacy settings."""

from __future__ import annotations

from types import SimpleNamespace

from devtools.load.harness import parse_metrics
from devtools.load.report import accounted

METRICS = """\
# TYPE dns_query_log_not_logged_total counter
dns_query_log_not_logged_total{reason="level"} 70.0
dns_query_log_not_logged_total{reason="domain"} 5.0
dns_query_log_written_total 25.0
"""


def test_entries_kept_out_by_privacy_are_counted_once_over_their_reasons():
    run = SimpleNamespace(rows=25, metrics=parse_metrics(METRICS))

    assert accounted(run) == 100
