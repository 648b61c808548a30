"""`SQLiteSession`: sessions in one SQLite file, shared safely by threads and processes.

One table holds the entries of every session of the file, numbered by an autoincrement key.
The database runs in WAL mode (readers never wait for the writer) with a busy timeout, and an
append is one `BEGIN IMMEDIATE` transaction: writers take turns, each append's entries land
together and in order, and a process killed mid-append leaves either all of them or none.
Blocking calls run on a worker thread, off the event loop; each session object has its own
connection, guarded by a lock, opened on first use.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

import anyio.to_thread

from agentkit._sqlite import not_sqlite, open_shared
from agentkit.errors import UserError
from agentkit.sessions.base import Entry, HistoryLimit, check_entries, check_session_id

__all__ = ["SQLiteSession"]

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "session TEXT NOT NULL, entry TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_by_session ON entries (session, seq)",
)


class SQLiteSession:
    """A session stored in a SQLite file; many sessions, threads and processes may share it.

    Args:
        path: the database file, created with its folders if missing.
        session_id: the conversation's name.
        limit: how much history a new run sends to the model (see `HistoryLimit`).
        timeout: seconds to wait for another writer's lock before failing.
        synchronous: `FULL` (the default) makes each append durable against power loss too;
            `NORMAL` is faster and still survives a killed process.

    Sync twins (`load_sync`, `append_sync`, `clear_sync`) serve code without an event loop.
    """

    def __init__(
        self,
        path: str | Path,
        session_id: str,
        *,
        limit: HistoryLimit | None = None,
        timeout: float = 30.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        check_session_id(session_id)
        if synchronous not in ("FULL", "NORMAL"):
            raise UserError(f"synchronous: must be FULL or NORMAL (got {synchronous!r})")
        self.path = Path(path)
        self.session_id = session_id
        self.limit = limit
        self.timeout = timeout
        self.synchronous = synchronous
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # -- async API ------------------------------------------------------------------------

    async def load(self) -> list[Entry]:
        """Every entry of this session, oldest first."""
        return await anyio.to_thread.run_sync(self.load_sync)

    async def append(self, entries: Sequence[Entry]) -> None:
        """Add entries at the end, in one transaction."""
        texts = check_entries(entries)
        await anyio.to_thread.run_sync(partial(self._with, partial(_insert, texts=texts)))

    async def clear(self) -> None:
        """Delete every entry of this session (other sessions of the file stay)."""
        await anyio.to_thread.run_sync(self.clear_sync)

    # -- sync twins -----------------------------------------------------------------------

    def load_sync(self) -> list[Entry]:
        """`load` without an event loop."""
        rows = self._with(_select)
        return [json.loads(text) for (text,) in rows]

    def append_sync(self, entries: Sequence[Entry]) -> None:
        """`append` without an event loop."""
        texts = check_entries(entries)
        self._with(partial(_insert, texts=texts))

    def clear_sync(self) -> None:
        """`clear` without an event loop."""
        self._with(_delete)

    def close(self) -> None:
        """Close the connection (another call opens a new one)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    @staticmethod
    def sessions(path: str | Path) -> dict[str, int]:
        """The sessions stored in a file, each with its number of entries."""
        if not Path(path).exists():
            return {}
        with sqlite3.connect(path, timeout=30.0) as connection:
            try:
                rows = connection.execute(
                    "SELECT session, COUNT(*) FROM entries GROUP BY session ORDER BY session"
                ).fetchall()
            except sqlite3.OperationalError:  # no table yet
                return {}
            except sqlite3.DatabaseError as exc:
                raise not_sqlite(path, exc) from None
        return {name: count for name, count in rows}

    # -- plumbing -------------------------------------------------------------------------

    def _with(self, work: Callable[[sqlite3.Connection, str], T]) -> T:
        with self._lock:
            if self._connection is None:
                self._connection = self._connect()
            try:
                return work(self._connection, self.session_id)
            except sqlite3.OperationalError:  # busy, full, read-only: not the file's fault
                raise
            except sqlite3.DatabaseError as exc:
                raise not_sqlite(self.path, exc) from None

    def _connect(self) -> sqlite3.Connection:
        try:
            return open_shared(
                self.path, timeout=self.timeout, synchronous=self.synchronous, schema=_SCHEMA
            )
        except sqlite3.OperationalError:  # busy, full, read-only: not the file's fault
            raise
        except sqlite3.DatabaseError as exc:
            raise not_sqlite(self.path, exc) from None

    def __repr__(self) -> str:
        return f"SQLiteSession({str(self.path)!r}, {self.session_id!r})"


def _select(connection: sqlite3.Connection, session: str) -> list[tuple[str]]:
    return connection.execute(
        "SELECT entry FROM entries WHERE session = ? ORDER BY seq", (session,)
    ).fetchall()


def _transaction(connection: sqlite3.Connection, work: Callable[[], object]) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        work()
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _insert(connection: sqlite3.Connection, session: str, *, texts: list[str]) -> None:
    now = time.time()
    rows = [(session, text, now) for text in texts]
    sql = "INSERT INTO entries (session, entry, created) VALUES (?, ?, ?)"
    _transaction(connection, lambda: connection.executemany(sql, rows))


def _delete(connection: sqlite3.Connection, session: str) -> None:
    sql = "DELETE FROM entries WHERE session = ?"
    _transaction(connection, lambda: connection.execute(sql, (session,)))
