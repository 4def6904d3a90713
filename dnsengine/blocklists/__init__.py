"""Blocklists: the list formats, fetching, importing and subscriptions.

Owns parsing hosts, plain-domain and Adblock-style lists (``formats``), downloading
them within size and time limits (``fetch``), writing their names to the database in
short transactions (``store``), loading a list and updating the subscribed ones
(``importer``, called by the web, the ``importblocklist`` and ``updateblocklists``
commands and the runtime's updater), and the public-suffix checks that keep a list
from blocking a whole top-level domain (``suffixes``, ``list_suffixes``). It may use
the core's name and rule helpers (``core.names``, ``core.rules``) but none of the
core's internals (sockets, resolver, cache), and never the runtime or web code.
"""
