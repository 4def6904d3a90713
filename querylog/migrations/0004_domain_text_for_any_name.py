"""Room for any name in presentation form (up to 1,003 characters), without rewriting the log.

On SQLite the declared length is not enforced, so only Django's state changes;
letting Django alter the field there would copy the whole table. On PostgreSQL
widening a varchar is a catalogue change: no rewrite, no index rebuild.
"""

from django.db import migrations, models


def widen(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in ("querylog_querylog", "querylog_domainrollup"):
        schema_editor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "domain" TYPE varchar(1004)')


def narrow(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in ("querylog_querylog", "querylog_domainrollup"):
        schema_editor.execute(
            f'ALTER TABLE "{table}" ALTER COLUMN "domain" TYPE varchar(253) USING left("domain", 253)'
        )


class Migration(migrations.Migration):
    dependencies = [("querylog", "0003_rollupsummary")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="querylog", name="domain", field=models.CharField(max_length=1004)),
                migrations.AlterField(
                    model_name="domainrollup", name="domain", field=models.CharField(max_length=1004)
                ),
            ],
            database_operations=[migrations.RunPython(widen, narrow)],
        )
    ]
