"""Where `Cached` keeps its answers: the `CacheStore` protocol, an in-memory LRU store and a
SQLite store that several processes may share.

A store maps a key (a sha256 hex digest) to bytes, and forgets what is older than its `ttl` and,
past its cap, what was least recently used. A store holds what it is given and nothing else:
the keys and values `Cached` hands it are built from requests and answers, never from headers.

The SQLite store keeps one table in one file, in WAL mode (readers never wait for the writer)
with a busy timeout: each write is one short `BEGIN IMMEDIATE` transaction, so writers from any
number of threads and processes take turns instead of failing with "database is locked". The
totals the caps need are kept by triggers, so a write costs the same however full the file is.

Its calls run on a worker thread (`anyio.to_thread`). A read takes some 50 µs and a write some
200 µs, short enough to make on the event loop, but a write that meets another process's lock
waits for it, up to the busy timeout, and the event loop must not wait with it. The hop costs
some 65 µs, nothing beside a model call.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import anyio.to_thread

from agentkit._sqlite import not_sqlite, open_shared
from agentkit.errors import UserError

__all__ = ["CacheStore", "MemoryCacheStore", "SQLiteCacheStore"]

T = TypeVar("T")
Clock = Callable[[], float]
logger = logging.getLogger("agentkit.cache")


@runtime_checkable
class CacheStore(Protocol):
    """What `Cached` needs of a store. Write your own to keep answers elsewhere (Redis, a
    shared disk...).

    A store that cannot answer at the moment (a server away, a disk full) should say so as a
    miss (`get` returns None, `set` drops the value) rather than raise: an exception reaches the
    caller of the model call.
    """

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when there is none (or it has expired)."""
        ...

    async def set(self, key: str, value: bytes) -> None:
        """Store `value` under `key`, replacing what was there."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds (connections, files). Idempotent."""
        ...


def _check_limits(owner: str, ttl: float | None, **caps: int | None) -> None:
    if ttl is not None and not (isinstance(ttl, int | float) and ttl > 0):
        raise UserError(f"{owner}: ttl must be a number of seconds > 0 or None (got {ttl!r})")
    for name, cap in caps.items():
        if cap is not None and not (isinstance(cap, int) and not isinstance(cap, bool) and cap > 0):
            raise UserError(f"{owner}: {name} must be an integer >= 1 or None (got {cap!r})")


class MemoryCacheStore:
    """A store in this process's memory: least recently used entries go first once it holds
    `max_entries`.

    Args:
        max_entries: the most entries kept (None: no limit).
        ttl: seconds an entry lives after it is stored (None: until evicted).
        clock: the time in seconds (tests inject one).

    Raises:
        UserError: a limit that is not a positive number, naming it and the value.
    """

    def __init__(
        self, *, max_entries: int | None = 1024, ttl: float | None = None, clock: Clock = time.time
    ) -> None:
        _check_limits("MemoryCacheStore", ttl, max_entries=max_entries)
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        # Runs on several threads' event loops (`run_sync` from threads) may share one store.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MemoryCacheStore(max_entries={self.max_entries}, ttl={self.ttl})"

    async def get(self, key: str) -> bytes | None:
        """The value under `key`, now the most recently used; None if absent or expired."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            stored, value = found
            if self.ttl is not None and self._clock() - stored >= self.ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    async def set(self, key: str, value: bytes) -> None:
        """Store `value`, evicting the least recently used entries past `max_entries`."""
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while self.max_entries is not None and len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    async def aclose(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


TOUCH_EVERY = 1.0
"""Seconds within which an entry's hits record its use only once: least recently used is
counted to the second, and processes reading one entry do not take turns to write."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value BLOB NOT NULL, "
    "size INTEGER NOT NULL, stored REAL NOT NULL, used REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS responses_by_use ON responses (used)",
    "CREATE INDEX IF NOT EXISTS responses_by_age ON responses (stored)",
    # The totals are kept as rows change, so that a write knows at once whether it passed a cap
    # (counting them would read the whole table on every write).
    "CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), "
    "entries INTEGER NOT NULL, bytes INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO totals VALUES (0, 0, 0)",
    "CREATE TRIGGER IF NOT EXISTS responses_added AFTER INSERT ON responses BEGIN "
    "UPDATE totals SET entries = entries + 1, bytes = bytes + new.size; END",
    "CREATE TRIGGER IF NOT EXISTS responses_removed AFTER DELETE ON responses BEGIN "
    "UPDATE totals SET entries = entries - 1, bytes = bytes - old.size; END",
    "CREATE TRIGGER IF NOT EXISTS responses_replaced AFTER UPDATE OF size ON responses BEGIN "
    "UPDATE totals SET bytes = bytes - old.size + new.size; END",
)
_UPSERT = (
    "INSERT INTO responses (key, value, size, stored, used) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size, "
    "stored = excluded.stored, used = excluded.used"
)
_LEAST_USED = "SELECT key, size FROM responses ORDER BY used, rowid LIMIT ?"


class SQLiteCacheStore:
    """A store in one SQLite file, shared safely by threads and processes.

    Args:
        path: the database file, created with its folders if missing.
        max_entries: the most entries kept (None: no limit); the least recently used go first.
        max_bytes: the most bytes of values kept (None: no limit), evicted the same way; a
            value larger than this is not stored.
        ttl: seconds an entry lives after it is stored (None: until evicted).
        timeout: seconds to wait for another writer's lock before giving up; a store that
            gives up logs a warning and answers as a miss, it does not fail the model call.
        clock: the time in seconds (tests inject one).

    Raises:
        UserError: a limit that is not a positive number, naming it and the value.
        ConfigurationError: on first use, when `path` is not a SQLite database.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = 256 * 1024 * 1024,
        ttl: float | None = None,
        timeout: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        _check_limits("SQLiteCacheStore", ttl, max_entries=max_entries, max_bytes=max_bytes)
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise UserError(f"SQLiteCacheStore: timeout must be seconds > 0 (got {timeout!r})")
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.timeout = timeout
        self._clock = clock
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteCacheStore({str(self.path)!r})"

    async def get(self, key: str) -> bytes | None:
        """The value under `key`, now the most recently used; None if absent or expired."""
        return await anyio.to_thread.run_sync(self.get_sync, key)

    async def set(self, key: str, value: bytes) -> None:
        """Store `value`, then evict expired entries and those past the caps."""
        await anyio.to_thread.run_sync(self.set_sync, key, value)

    async def aclose(self) -> None:
        """Close the connection (another call opens a new one)."""
        await anyio.to_thread.run_sync(self.close)

    def get_sync(self, key: str) -> bytes | None:
        """`get` without an event loop."""
        return self._with(partial(self._get, key), None)

    def set_sync(self, key: str, value: bytes) -> None:
        """`set` without an event loop."""
        if self.max_bytes is not None and len(value) > self.max_bytes:
            return  # it would be the first to go
        self._with(partial(self._set, key, value), None)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def count(self) -> tuple[int, int]:
        """How many entries the file holds, and their values' bytes."""
        sql = "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM responses"
        rows = self._with(lambda c: c.execute(sql).fetchone(), (0, 0))
        return int(rows[0]), int(rows[1])

    # -- plumbing -------------------------------------------------------------------------

    def _get(self, key: str, connection: sqlite3.Connection) -> bytes | None:
        row = connection.execute(
            "SELECT value, stored, used FROM responses WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        value, stored, used = row
        now = self._clock()
        if self.ttl is not None and now - stored >= self.ttl:
            return None  # the next write clears it
        if now - used < TOUCH_EVERY:
            return bytes(value)  # a hot entry's hits take no write lock
        # One short write of its own, after the read: a read never holds the lock while it
        # waits. When another writer holds it past the timeout, the hit stands all the same; the
        # entry only looks older to eviction.
        try:
            connection.execute("UPDATE responses SET used = ? WHERE key = ?", (now, key))
        except sqlite3.OperationalError as exc:
            logger.debug("response cache %s: use not recorded (SQLite: %s)", self.path, exc)
        return bytes(value)

    def _set(self, key: str, value: bytes, connection: sqlite3.Connection) -> None:
        now = self._clock()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(_UPSERT, (key, value, len(value), now, now))
            if self.ttl is not None:
                connection.execute("DELETE FROM responses WHERE stored <= ?", (now - self.ttl,))
            self._evict(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _evict(self, connection: sqlite3.Connection) -> None:
        """Past a cap, the least recently used entries go until the rest fit (the one just
        written is the most recent, and fits: a larger one is never written)."""
        entries, size = connection.execute("SELECT entries, bytes FROM totals").fetchone()
        over_entries = 0 if self.max_entries is None else entries - self.max_entries
        over_bytes = 0 if self.max_bytes is None else size - self.max_bytes
        while over_entries > 0 or over_bytes > 0:
            batch = connection.execute(_LEAST_USED, (max(over_entries, 16),)).fetchall()
            if not batch:
                break
            doomed = []
            for key, bytes_ in batch:
                if over_entries <= 0 and over_bytes <= 0:
                    break
                doomed.append((key,))
                over_entries -= 1
                over_bytes -= bytes_
            connection.executemany("DELETE FROM responses WHERE key = ?", doomed)

    def _with(self, work: Callable[[sqlite3.Connection], T], unavailable: T) -> T:
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                return work(self._connection)
            except sqlite3.OperationalError as exc:
                # Busy past the timeout, disk full, read-only: a cache that cannot answer is a
                # miss, never a failed model call.
                logger.warning("response cache %s unavailable (SQLite: %s)", self.path, exc)
                return unavailable
            except sqlite3.DatabaseError as exc:
                raise not_sqlite(self.path, exc) from None

    def _connect(self) -> sqlite3.Connection:
        # A cache may lose its last writes to a power cut (NORMAL); it is never damaged.
        return open_shared(self.path, timeout=self.timeout, synchronous="NORMAL", schema=_SCHEMA)
