from django.apps import AppConfig


class QuerylogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "querylog"
    verbose_name = "Query log"
