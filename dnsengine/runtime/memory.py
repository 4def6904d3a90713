"""Where the engine's memory is: SQLite's heap, the C allocator, Python's objects.

RSS alone cannot tell a leak from a cache filling up to its bound, or from the
allocator keeping freed memory for reuse. These readings, exported as metrics and
printed per minute by `make soak`, can:

- SQLite's heap (page caches, statements): ``sqlite3_memory_used()``, for every
  connection of the process. Bounded by ``PRAGMA cache_size`` per connection.
- glibc malloc (``mallinfo2``): bytes in use, and bytes freed but kept in the
  allocator's arenas. Python objects larger than 512 bytes, SQLite and every C
  library allocate here. ``mallinfo2`` walks the free lists with each arena
  locked: cheap at a scrape every few seconds, not something for a hot path.
- Python's own allocator: ``sys.getallocatedblocks()``, the live small objects.

Each reading is None where the platform lacks it (musl, macOS, Windows, a
statically linked SQLite, or one built without memory statistics); the metrics
are then left out, not reported as zero.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _load_mallinfo2():
    try:
        fn = ctypes.CDLL(None).mallinfo2  # glibc >= 2.33
    except Exception:  # no such symbol (musl, macOS), or no CDLL(None) at all (Windows)
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


def _load_sqlite_memory_used():
    try:
        import _sqlite3
        import sqlite3

        db = sqlite3.connect(":memory:")
        try:
            options = {row[0] for row in db.execute("PRAGMA compile_options")}
        finally:
            db.close()
        if "DEFAULT_MEMSTATUS=0" in options:
            return None  # the counter exists but always says 0
        fn = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used  # resolves in the libsqlite3 it links
    except Exception:  # a static or missing SQLite, or no such symbol
        return None
    fn.restype = ctypes.c_int64
    fn.argtypes = []
    return fn


_mallinfo2 = _load_mallinfo2()
_sqlite_memory_used = _load_sqlite_memory_used()


@dataclass(frozen=True, slots=True)
class MemoryReading:
    python_blocks: int
    sqlite_bytes: int | None = None
    malloc_in_use_bytes: int | None = None  # handed out, mmapped blocks included
    malloc_free_bytes: int | None = None  # freed, kept by the allocator (fragmentation, or reuse)


def read_memory() -> MemoryReading:
    """A reading of the process as it is now."""
    sqlite = _sqlite_memory_used() if _sqlite_memory_used is not None else None
    if _mallinfo2 is None:
        return MemoryReading(sys.getallocatedblocks(), sqlite)
    info = _mallinfo2()
    return MemoryReading(
        python_blocks=sys.getallocatedblocks(),
        sqlite_bytes=sqlite,
        malloc_in_use_bytes=info.uordblks + info.hblkhd,
        malloc_free_bytes=info.fordblks,
    )
