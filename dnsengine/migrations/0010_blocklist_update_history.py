import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dnsengine", "0009_domain_entries_audit"),
    ]

    operations = [
        migrations.AddField(
            model_name="blocklist",
            name="fetch_message",
            field=models.TextField(blank=True, help_text="the last fetch-now's result or error"),
        ),
        migrations.AddField(
            model_name="blocklist",
            name="fetch_requested",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="blocklist",
            name="fetch_state",
            field=models.CharField(
                blank=True,
                choices=[("pending", "pending"), ("running", "running"), ("done", "done"), ("failed", "failed")],
                max_length=10,
            ),
        ),
        migrations.CreateModel(
            name="BlocklistUpdate",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
                ("status", models.CharField(max_length=10)),
                ("entries", models.PositiveIntegerField(default=0)),
                ("added", models.PositiveIntegerField(default=0)),
                ("removed", models.PositiveIntegerField(default=0)),
                ("seconds", models.FloatField(default=0)),
                ("error", models.TextField(blank=True)),
                (
                    "blocklist",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="updates", to="dnsengine.blocklist"
                    ),
                ),
            ],
            options={"ordering": ["-at", "-pk"]},
        ),
    ]
