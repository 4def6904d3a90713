# Statuses of their own for queries refused before resolving (issue #12): "refused" (client
# not allowed or disallowed) and "ratelimited", which needs status columns of 12 characters.

from django.db import migrations, models


class AlterFieldExceptOnSQLite(migrations.AlterField):
    """Widens a column where the length is enforced (PostgreSQL, a catalogue-only change there).

    SQLite does not enforce a varchar's length, and altering a column there rebuilds the
    whole table: a long copy of a query log with millions of rows, for nothing.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "sqlite":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "sqlite":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [
        ("querylog", "0004_domain_text_for_any_name"),
    ]

    operations = [
        AlterFieldExceptOnSQLite(
            model_name="domainrollup",
            name="status",
            field=models.CharField(max_length=12),
        ),
        AlterFieldExceptOnSQLite(
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
                ],
                max_length=12,
            ),
        ),
        AlterFieldExceptOnSQLite(
            model_name="queryrollup",
            name="status",
            field=models.CharField(max_length=12),
        ),
    ]
