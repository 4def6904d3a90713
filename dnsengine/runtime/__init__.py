"""The engine runtime: the threads ``manage.py rundns`` runs around the DNS core.

Owns reading the settings into an ``EngineConfig``, checking the database at start,
building the core's ``Snapshot`` from the database and swapping it in when the
configuration changes (``watcher``), the blocklist updater, the heartbeat that writes
``EngineStatus``, the engine's own Prometheus endpoint and memory probe, and wiring all
of it with the query logger (``runner``). It may use Django's ORM and settings, the
core and the blocklists; it must not import web code (views, forms, urls).
"""
