# Cython declarations for resolver.py ("augmenting .pxd"): resolver.py stays the
# pure-Python reference. Compiled, Resolver is an extension type: its attributes are
# struct fields (no instance-dict lookup per use) and the per-query bookkeeping
# methods below are C calls. It keeps a __dict__, so an instance still takes any
# other attribute and a test may replace a def method on it (monkeypatch); the cdef
# methods are internal only (nothing outside resolver.py calls them).
import cython

cdef class Resolver:
    cdef dict __dict__
    cdef public object forwarder, clients, blocking, block_ttl, cache, ttl_policy, stats, query_logger, clock
    cdef public object snapshot, access, refused_action, rate_limiter, _blocked_mode, _prefetch_lock
    cdef public dict _rendered, _blocked_entries, _special_entries, _rotation, _hits, _prefetching
    cdef public set _prefetch_keys
    cdef public Py_ssize_t rendered_max, rendered_max_bytes, _rendered_bytes, prefetch_min_hits
    cdef public bint forward_single_label, forward_private_reverse, cname_inspection

    @cython.locals(rendered=dict, hit=tuple)
    cpdef bint handle(self, data, client, transport, addr) except -1

    cdef _blocked_entry(self, qtype)

    @cython.locals(rendered=dict, cost=Py_ssize_t)
    cdef _remember_rendered(self, ex, reply, valid_until, domain, rcode, status, rule, prefix=*, checked=*,
                            targets=*)

    cdef _record_rendered(self, tuple hit, client, group, started, arrived)

    cdef _log(self, ex, name, rcode, status, rule, upstream=*)

    cdef _record(self, query, name, rcode, status, rule, upstream, client, proto, started, arrived, group=*)

    cdef _record_text(self, query, name, rcode, status, rule, client, proto, started, arrived, upstream=*,
                      group=*)
