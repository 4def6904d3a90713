from django.apps import AppConfig


class DnsengineConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "dnsengine"
    verbose_name = "DNS engine"

    def ready(self) -> None:
        from dnsengine import signals  # noqa: F401  (connects the config-generation bumps)
