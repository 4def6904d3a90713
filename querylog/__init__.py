"""querylog: records every answered query and shows the history and the dashboard.

``logger`` is the pipeline the engine writes through (bounded queue, writer pool);
``db``, ``rollups``, ``sqlite_wal`` and ``retention`` keep the tables; the rest is the
Django app that reads them (models, selectors, views, the JSON API). The pipeline knows nothing
of DNS: the engine hands it ``dnsengine.core.entry.QueryLogEntry`` values.
"""
