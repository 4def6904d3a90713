from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from gloryhole_site.testing.factories import make_query
from querylog.models import AnswerRollup, QueryRollup
from querylog.rollups import time_bucket, time_bucket_bounds


@pytest.fixture
def token(settings) -> str:
    settings.GLORYHOLE_API_TOKEN = "s3cret-token-for-tests"
    return settings.GLORYHOLE_API_TOKEN


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["api-stats", "api-queries", "api-status"])
def test_anonymous_requests_get_401_json_not_a_login_page(web, name):
    response = web.get(reverse(name))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "error" in response.json()


@pytest.mark.django_db
def test_a_bearer_token_opens_the_api(web, token):
    response = web.get(reverse("api-status"), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response.json()["engines"] == []


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer wrong", "Basic czNjcmV0", "Bearer", ""])
def test_a_wrong_token_is_refused(web, token, header):
    assert web.get(reverse("api-status"), HTTP_AUTHORIZATION=header).status_code == 401


@pytest.mark.django_db
def test_no_token_is_accepted_while_none_is_configured(web, settings):
    settings.GLORYHOLE_API_TOKEN = ""
    assert web.get(reverse("api-status"), HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_queries_returns_rows_and_a_next_link_with_the_filters(viewer_web):
    now = timezone.now()
    for i in range(3):
        make_query(f"d{i}.example.com", status="blocked", rule="list:x", when=now - timedelta(seconds=i))
    make_query("fine.example.com", when=now - timedelta(seconds=10))
    first = viewer_web.get(reverse("api-queries"), {"status": "blocked", "limit": "2"}).json()
    assert [r["domain"] for r in first["results"]] == ["d0.example.com", "d1.example.com"]
    assert first["results"][0]["rule"] == "list:x"
    assert "status=blocked" in first["next"]
    second = viewer_web.get(first["next"]).json()
    assert [r["domain"] for r in second["results"]] == ["d2.example.com"]
    assert second["next"] is None


def test_queries_reports_bad_parameters_as_400(viewer_web):
    response = viewer_web.get(reverse("api-queries"), {"client": "999.1.1.1", "limit": "100000"})
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"client", "limit"}


def test_stats_come_from_the_rollups(viewer_web):
    QueryRollup.objects.create(bucket=timezone.now().replace(second=0, microsecond=0), status="blocked", count=4)
    QueryRollup.objects.create(bucket=timezone.now().replace(second=0, microsecond=0), status="forwarded", count=6)
    data = viewer_web.get(reverse("api-stats"), {"window": "1h"}).json()
    assert (data["total"], data["blocked"], data["blocked_pct"]) == (10, 4, 40.0)
    assert len(data["chart"]) == 60
    assert viewer_web.get(reverse("api-stats"), {"window": "1y"}).status_code == 400


def test_stats_give_query_types_and_upstream_answer_times(viewer_web):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    up = "192.0.2.53:53"
    AnswerRollup.objects.create(bucket=hour, qtype="A", upstream=up, time_bucket=time_bucket(4000), count=3)
    AnswerRollup.objects.create(bucket=hour, qtype="AAAA", upstream="", time_bucket=0, count=1)
    data = viewer_web.get(reverse("api-stats"), {"window": "24h"}).json()
    assert data["query_types"] == [{"qtype": "A", "count": 3, "pct": 75.0}, {"qtype": "AAAA", "count": 1, "pct": 25.0}]
    (upstream,) = data["upstreams"]
    assert (upstream["upstream"], upstream["count"], upstream["pct"]) == (up, 3, 100.0)
    low, high = time_bucket_bounds(time_bucket(4000))
    assert upstream["median_ms"] == upstream["p95_ms"] == round((low + high) // 2 / 1000, 1)


def test_the_api_is_read_only(viewer_web):
    assert viewer_web.post(reverse("api-status")).status_code == 405
