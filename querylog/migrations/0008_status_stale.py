# A status of its own for an expired answer served because no upstream answered (issue #13,
# RFC 8767 serve-stale). Only the choices change: no column is altered on any database.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("querylog", "0007_clientrollup_blocked"),
    ]

    operations = [
        migrations.AlterField(
            model_name="querylog",
            name="status",
            field=models.CharField(
                choices=[
                    ("blocked", "Blocked"),
                    ("allowed", "Allowed (allowlist, forwarded)"),
                    ("forwarded", "Forwarded"),
                    ("cached", "Cached"),
                    ("local", "Local record"),
                    ("error", "Error"),
                    ("refused", "Refused: client not allowed"),
                    ("ratelimited", "Refused: rate limit"),
                    ("stale", "Stale (upstreams down, expired answer served)"),
                ],
                max_length=12,
            ),
        ),
    ]
