"""The command line's session options, shared by `run` and `chat`: `--session`, `--session-db`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agentkit.sessions.base import check_session_id
from agentkit.sessions.sqlite import SQLiteSession

__all__ = ["DB_VARIABLE", "add_session_options", "default_db", "open_session"]

DB_VARIABLE = "AGENTKIT_SESSION_DB"
"""The environment variable naming the sessions file, when `--session-db` is not given."""


def default_db() -> Path:
    """`$AGENTKIT_SESSION_DB`, else `$XDG_DATA_HOME/agentkit/sessions.db`, else
    `~/.local/share/agentkit/sessions.db`."""
    if os.environ.get(DB_VARIABLE):
        return Path(os.environ[DB_VARIABLE]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "agentkit" / "sessions.db"


def add_session_options(parser: argparse.ArgumentParser) -> None:
    """`--session NAME` and `--session-db PATH`."""
    parser.add_argument(
        "--session",
        metavar="NAME",
        help="keep the conversation under this name, and continue it if it exists",
    )
    parser.add_argument(
        "--session-db",
        metavar="PATH",
        help=f"the sessions file (default: ${DB_VARIABLE}, else "
        "$XDG_DATA_HOME/agentkit/sessions.db, else ~/.local/share/agentkit/sessions.db)",
    )


def open_session(args: argparse.Namespace) -> SQLiteSession | None:
    """The session the options name, or None without `--session`."""
    if not args.session:
        return None
    check_session_id(args.session, "--session")
    path = Path(args.session_db).expanduser() if args.session_db else default_db()
    return SQLiteSession(path, args.session)
