"""/settings/privacy/, the privacy notice on the pages it affects, and forgetting a client from the clients page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from gloryhole_site.testing.querylog import make_entry
from querylog.logger.writer import QueryLogWriter
from querylog.models import PrivacySettings, QueryLog
from querylog.privacy_settings import privacy_policy_current, privacy_settings_save

URL = "/settings/privacy/"
VALID = {
    "level": "1",
    "anonymize_v4_prefix": "24",
    "anonymize_v6_prefix": "48",
    "dont_log_clients": "192.168.1.20\n10.0.0.0/8, Kids",
    "dont_log_domains": "*.bank.example",
}


def test_staff_saves_the_settings_and_engines_get_the_policy(staff_web):
    response = staff_web.post(URL, VALID)
    assert response.status_code == 302
    row = PrivacySettings.objects.get()
    assert row.level == 1 and "Kids" in row.dont_log_clients
    policy = privacy_policy_current()
    assert policy.level == 1 and policy.clients.groups == {"Kids"} and policy.domains.suffixes == {"bank.example"}
    page = staff_web.get(URL).content.decode()
    assert "192.168.1.20" in page and 'value="1" selected' in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("level", "4", "Select a valid choice"),
        ("anonymize_v4_prefix", "33", "less than or equal to 32"),
        ("dont_log_clients", "10.0.0.300", "is not an IP address or network"),
        ("dont_log_domains", "bad name.example", "is not a domain"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(staff_web, field, value, message):
    response = staff_web.post(URL, {**VALID, field: value})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not PrivacySettings.objects.exists()


def test_an_environment_value_wins_and_shows_as_fixed(staff_web, settings):
    settings.GLORYHOLE_PRIVACY_LEVEL = 2
    page = staff_web.get(URL).content.decode()
    assert "fixed by GLORYHOLE_PRIVACY_LEVEL" in page
    staff_web.post(URL, {**VALID, "level": "0"})
    assert PrivacySettings.objects.get().level == 0  # the default stays saved: the field is disabled
    assert privacy_policy_current().level == 2
    assert privacy_policy_current().clients.groups == {"Kids"}  # the other fields were saved


def test_viewers_cannot_change_privacy(viewer_web):
    assert viewer_web.post(URL, VALID).status_code == 403
    assert not PrivacySettings.objects.exists()


@pytest.mark.parametrize("url_name", ["querylog-history", "querylog-dashboard", "dnsengine-clients"])
def test_pages_the_level_affects_say_so(staff_web, url_name):
    assert "Privacy level" not in staff_web.get(reverse(url_name)).content.decode()
    privacy_settings_save({"level": 1})
    assert "Privacy level 1: domains are not stored" in staff_web.get(reverse(url_name)).content.decode()


def test_the_csv_export_says_what_was_not_stored(staff_web):
    privacy_settings_save({"level": 2, "anonymize_clients": True})
    body = b"".join(staff_web.get(reverse("querylog-export")).streaming_content).decode()
    assert body.startswith("# Privacy level 2: neither domains nor clients are stored")


@pytest.mark.django_db(transaction=True)
def test_forget_asks_first_then_deletes_the_clients_rows(staff_web):
    writer = QueryLogWriter("test")
    writer([make_entry(i, client="192.0.2.66") for i in range(4)] + [make_entry(9, client="192.0.2.7")])
    assert "Forget" in staff_web.get(reverse("dnsengine-clients")).content.decode()
    confirm = staff_web.get(reverse("querylog-client-forget"), {"client": "192.0.2.66"})
    assert "This deletes 4 logged queries of 192.0.2.66" in confirm.content.decode()
    assert QueryLog.objects.count() == 5  # nothing yet
    response = staff_web.post(reverse("querylog-client-forget"), {"client": "192.0.2.66"}, follow=True)
    assert "Forgot 192.0.2.66: 4 rows deleted" in response.content.decode()
    assert list(QueryLog.objects.values_list("client", flat=True)) == ["192.0.2.7"]


def test_viewers_cannot_forget(viewer_web):
    QueryLogWriter("test")([make_entry(1, client="192.0.2.66")])
    assert viewer_web.post(reverse("querylog-client-forget"), {"client": "192.0.2.66"}).status_code == 403
    assert QueryLog.objects.count() == 1
