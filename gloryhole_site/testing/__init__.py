"""Helpers the tests of every app import; fixtures that use them live in the conftest.py files.

- `fake_upstream`: a DNS server on loopback that stands in for the upstream resolvers
  (also runnable: `python -m gloryhole_site.testing.fake_upstream`).
- `dnsclient`: a real DNS client pointed at an engine, and readers of its replies.
- `rundns`: `manage.py rundns` as a subprocess sharing the test database.
- `querylog`: query-log entries and stand-in writers and loggers.
- `engine`: helpers for an engine running in the test process.
- `factories`: `QueryLog` rows for the web tests.
- `list_server`: a blocklist HTTP server on loopback.

Nothing here is imported by the product.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root, where manage.py is."""
