"""dnsengine: answers DNS, and the Django app for what it serves.

Three layers, a package each, with the Django app (models, admin, forms, selectors,
``services/``, ``views/``, urls, the commands) at this top:

- ``core``: the DNS hot path, free of Django and of ``querylog``;
- ``runtime``: the threads ``manage.py rundns`` runs around the core;
- ``blocklists``: list formats, fetching, importing and subscriptions.

docs/architecture.md has the module map and the path of one query.
"""

# Before any core module is imported: the compiled twin's .so only when allowed and built
# from the source that is there now (dnsengine/core/compiled.py).
from dnsengine.core import compiled as _compiled

_compiled.install()
