"""`MemorySession`: a session held in the process's memory, for tests and short-lived apps."""

from __future__ import annotations

import json
from collections.abc import Sequence

from agentkit.sessions.base import Entry, HistoryLimit, check_entries

__all__ = ["MemorySession"]


class MemorySession:
    """A session in memory: gone when the process ends.

    Entries are stored as JSON text, as a database would, so what comes back from `load` is a
    copy and anything that would not survive storage is refused at `append`.

    Args:
        session_id: the conversation's name.
        limit: how much history a new run sends to the model (see `HistoryLimit`).
    """

    def __init__(self, session_id: str = "default", *, limit: HistoryLimit | None = None) -> None:
        self.session_id = session_id
        self.limit = limit
        self._entries: list[str] = []  # list.extend is atomic: no lock needed

    async def load(self) -> list[Entry]:
        """Every entry, oldest first."""
        return [json.loads(text) for text in self._entries]

    async def append(self, entries: Sequence[Entry]) -> None:
        """Add entries at the end, together."""
        self._entries.extend(check_entries(entries))

    async def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __repr__(self) -> str:
        return f"MemorySession({self.session_id!r}, {len(self._entries)} entries)"
