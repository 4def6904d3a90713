"""The lists a fresh install starts with.

- StevenBlack's unified hosts (ads and malware, ~100k names): a subscription,
  enabled, with no contents yet; `manage.py updateblocklists` or the engine's
  updater fetches it as soon as the machine is online.
- The small list bundled in dnsengine/data/, loaded here from the file, so
  blocking works from the first start, offline too.

Written against the historical models; parsing goes through the streaming
parser, which is pure (no models), and only the names it returns are stored.
"""

import hashlib
from pathlib import Path

from django.db import migrations
from django.utils import timezone

STEVENBLACK_NAME = "StevenBlack unified hosts"
STEVENBLACK_URL = "https://raw.githubusercontent.com/StevenBlack/hosts/master/hosts"
BUNDLED_NAME = "Glory-Hole bundled list"
BUNDLED_SOURCE = "bundled:bundled-blocklist.txt"
BUNDLED_PATH = Path(__file__).resolve().parent.parent / "data" / "bundled-blocklist.txt"


def create_default_lists(apps, schema_editor):
    from dnsengine.blocklists.formats import read_blocklist_file

    Blocklist = apps.get_model("dnsengine", "Blocklist")
    BlockedDomain = apps.get_model("dnsengine", "BlockedDomain")
    ConfigGeneration = apps.get_model("dnsengine", "ConfigGeneration")
    db = schema_editor.connection.alias
    now = timezone.now()

    Blocklist.objects.using(db).get_or_create(
        name=STEVENBLACK_NAME,
        defaults={"url": STEVENBLACK_URL, "source": STEVENBLACK_URL, "format": "hosts", "enabled": True},
    )

    if Blocklist.objects.using(db).filter(name=BUNDLED_NAME).exists():
        return
    result = read_blocklist_file(BUNDLED_PATH, "domains")
    bundled = Blocklist.objects.using(db).create(
        name=BUNDLED_NAME,
        source=BUNDLED_SOURCE,
        format="domains",
        enabled=True,
        domain_count=len(result.domains),
        last_loaded=now,
        # The file's hash stands in for an ETag: updateblocklists reloads it when a release changes it.
        etag="sha256:" + hashlib.sha256(BUNDLED_PATH.read_bytes()).hexdigest(),
    )
    BlockedDomain.objects.using(db).bulk_create(
        [BlockedDomain(blocklist=bundled, domain=d) for d in result.domains], batch_size=500
    )
    # Engines already running on this database load the new lists.
    generations = ConfigGeneration.objects.using(db)
    generation, created = generations.get_or_create(pk=1, defaults={"value": 1, "changed_at": now})
    if not created:
        generations.filter(pk=1).update(value=generation.value + 1, changed_at=now)


def remove_default_lists(apps, schema_editor):
    Blocklist = apps.get_model("dnsengine", "Blocklist")
    Blocklist.objects.using(schema_editor.connection.alias).filter(name__in=[STEVENBLACK_NAME, BUNDLED_NAME]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dnsengine", "0002_blocklist_subscriptions_and_pause"),
    ]

    operations = [
        migrations.RunPython(create_default_lists, remove_default_lists),
    ]
