"""The DNS core: everything between a packet arriving and its reply leaving.

Owns the wire format (parsing a query, patching a cached reply), the I/O loop and the
UDP/TCP listeners, the forwarder and its upstream transport, the resolver (rules, local
records, names that never leave the box, the cache), the counters, and the value types
of the engine's options. It is plain Python on the hot path of every query: it imports
nothing from Django, nothing from ``querylog`` and nothing from the other ``dnsengine``
packages. The runtime hands it plain values (a ``Snapshot`` of the rules, an
``EngineConfig``'s parts) and a query-log sink that satisfies
``resolver.QueryLogSink``; ``dnsengine/tests/test_layers.py`` checks all of this.
"""
