from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dnsengine", "0008_localrecord_types"),
    ]

    operations = [
        migrations.AddField(
            model_name="alloweddomain",
            name="changed",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="alloweddomain",
            name="changed_by",
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name="blockrule",
            name="changed",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="blockrule",
            name="changed_by",
            field=models.CharField(blank=True, max_length=150),
        ),
    ]
