"""The hosts-format file of local records (`GLORYHOLE_LOCAL_HOSTS_FILE`), read on the config watcher's thread.

`LocalHostsFile.read_if_changed()` is called at every poll: one stat() when the
file's mtime and size are what they were. When they changed it reads and parses
the file there, on the watcher's thread, and hands back the rows; the watcher
then swaps a snapshot with the new local records in at once (no config
generation bump, no database). The DNS threads never touch the file.

Bounded: a file larger than HOSTS_MAX_BYTES is not read (its last records stay),
and at most HOSTS_MAX_ENTRIES records are taken from it; either is logged once
per change of the file. Malformed lines are skipped and named in one warning line.
"""

from __future__ import annotations

import logging
import os

from dnsengine.core.localrecords import HOSTS_MAX_BYTES, HOSTS_MAX_ENTRIES, HostsRecords, parse_hosts_records

logger = logging.getLogger(__name__)

# How many malformed line numbers the warning names before "and N more".
BAD_LINES_SHOWN = 20


class LocalHostsFile:
    def __init__(self, path: str, *, max_bytes: int = HOSTS_MAX_BYTES, max_entries: int = HOSTS_MAX_ENTRIES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        # (mtime_ns, size) of what was read last; None: nothing read (or the file is absent).
        self._stamp: tuple[int, int] | None = None
        self.rows: tuple = ()
        self.bad_lines: tuple[int, ...] = ()
        self.reads = 0

    def read_if_changed(self) -> tuple | None:
        """The file's rows when it changed since the last call (() when it went away); None when unchanged."""
        if not self.path:
            return None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp is None:
                return None
            logger.info("GLORYHOLE_LOCAL_HOSTS_FILE %s is gone: its %d records are no longer served",
                        self.path, len(self.rows))  # fmt: skip
            self._stamp = None
            self.rows, self.bad_lines = (), ()
            return ()
        except OSError as exc:
            logger.warning("cannot read GLORYHOLE_LOCAL_HOSTS_FILE %s: %s; keeping its last records", self.path, exc)
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        if stat.st_size > self.max_bytes:
            logger.warning("GLORYHOLE_LOCAL_HOSTS_FILE %s is %d bytes, more than the %d read at most: not read; "
                           "keeping its last %d records", self.path, stat.st_size, self.max_bytes,
                           len(self.rows))  # fmt: skip
            return None
        try:
            with open(self.path, "rb") as handle:
                text = handle.read(self.max_bytes + 1).decode("utf-8", errors="replace")
        except OSError as exc:
            logger.warning("cannot read GLORYHOLE_LOCAL_HOSTS_FILE %s: %s; keeping its last records", self.path, exc)
            self._stamp = None  # try again at the next poll
            return None
        parsed = parse_hosts_records(text, self.max_entries)
        self._report(parsed)
        self.rows, self.bad_lines = parsed.rows, parsed.bad_lines
        self.reads += 1
        return parsed.rows

    def _report(self, parsed: HostsRecords) -> None:
        if parsed.bad_lines:
            shown = ", ".join(str(n) for n in parsed.bad_lines[:BAD_LINES_SHOWN])
            more = len(parsed.bad_lines) - BAD_LINES_SHOWN
            logger.warning("GLORYHOLE_LOCAL_HOSTS_FILE %s: %d malformed lines skipped: %s%s", self.path,
                           len(parsed.bad_lines), shown, f" and {more} more" if more > 0 else "")  # fmt: skip
        if parsed.truncated:
            logger.warning("GLORYHOLE_LOCAL_HOSTS_FILE %s has more than %d records: the rest are left out",
                           self.path, self.max_entries)  # fmt: skip
        logger.info("GLORYHOLE_LOCAL_HOSTS_FILE %s read: %d records", self.path, len(parsed.rows))
