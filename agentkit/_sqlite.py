"""SQLite files that threads and processes share: the one way agentkit opens them.

A connection is in autocommit mode (writes begin their transactions explicitly, `BEGIN
IMMEDIATE`), in WAL mode (readers never wait for the writer), with a busy timeout (writers take
turns instead of failing with "database is locked"). Sessions and the response cache use it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from agentkit.errors import ConfigurationError, UserError

__all__ = ["Synchronous", "not_sqlite", "open_shared"]

Synchronous = Literal["FULL", "NORMAL"]


def open_shared(
    path: Path, *, timeout: float, synchronous: Synchronous, schema: Sequence[str]
) -> sqlite3.Connection:
    """A connection to the file `path` (made, with its folders, if missing), its `schema`
    statements run in one transaction.

    Raises:
        sqlite3.DatabaseError: as SQLite raises it; the caller says what it means.
        UserError: SQLite could not put the file in WAL mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        path, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise UserError(f"{path}: SQLite could not use WAL mode (got {mode!r})")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        connection.execute("BEGIN IMMEDIATE")
        for statement in schema:
            connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        connection.close()
        raise
    return connection


def not_sqlite(path: str | Path, exc: sqlite3.DatabaseError) -> ConfigurationError:
    """The error for a file SQLite cannot read as a database."""
    return ConfigurationError(f"{path}: not a SQLite database, or a damaged one (SQLite: {exc})")
