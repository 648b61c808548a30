"""The journal a run with a session writes as it goes.

Each message joins the session as soon as it is part of the transcript: the prompt before the
first model call, each model answer when it comes, each tool result the moment its call
finishes. Before a step's tool calls start, a `started` entry names them, so that after a crash
a call that may have acted is told from one that never began. When the run ends in its process,
normally or with an error, an `end` entry closes it; a run without one was interrupted.

The run hands each tool result over as its call finishes (`agentkit.agent.journaled`); a
result is queued at once and stored by the next write, so results that finish while a write is
under way go together in the one after it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import anyio

from agentkit.model_api import Message, ToolCall
from agentkit.sessions.base import Entry, Session

__all__ = ["RunJournal"]

_ACTIVE: set[str] = set()
"""Ids of the runs this process is running now: the others it finds open are not alive."""

HOST = socket.gethostname()


def is_active(run_id: str) -> bool:
    """Whether this process is running the run `run_id` now."""
    return run_id in _ACTIVE


class RunJournal:
    """Writes one run's progress to its session (see the module docstring).

    Args:
        session: where the entries go.
        run_id: the run's id, in every entry.
        written: how many of the run's messages the session already holds (or does not need:
            the history and the agent's system message).
    """

    def __init__(self, session: Session, run_id: str, written: int) -> None:
        self.session = session
        self.run_id = run_id
        self.written = written
        self.results: set[str] = set()
        """Ids of the calls whose results the session holds (a result is journaled once)."""
        self._queue: list[Entry] = []
        self._lock = anyio.Lock(fast_acquire=True)  # mostly uncontended: no extra yield

    @staticmethod
    def owner(claim: str | None = None) -> Entry:
        """The `run` entry's fields naming this process."""
        entry: Entry = {"pid": os.getpid(), "host": HOST}
        if claim is not None:
            entry["claim"] = claim
        return entry

    def activate(self) -> None:
        _ACTIVE.add(self.run_id)

    def _entry(self, message: Message, usage: Any = None) -> Entry:
        entry: Entry = {"kind": "message", "run": self.run_id}
        entry["message"] = message.model_dump(mode="json", exclude_defaults=True)
        if usage is not None:
            entry["usage"] = usage.model_dump(mode="json")
        return entry

    async def write(self, entries: Sequence[Entry]) -> None:
        """Append the queued results, then `entries`, in one go."""
        if not entries and not self._queue:
            return
        async with self._lock:
            batch = [*self._queue, *entries]
            self._queue = []
            if not batch:
                return
            try:
                await self.session.append(batch)
            except BaseException:
                self._queue[:0] = batch[: len(batch) - len(entries)]
                raise

    async def sync(
        self,
        messages: Sequence[Message],
        usage: Any,
        before: Sequence[Entry] = (),
        after: Sequence[Entry] = (),
    ) -> None:
        """Journal the transcript's messages not yet in the session, between `before` and
        `after`, in one append."""
        entries = list(before)
        for message in messages[self.written :]:
            if message.role == "tool":
                if message.tool_call_id in self.results:
                    continue
                self.results.add(str(message.tool_call_id))
            entries.append(self._entry(message, usage if message.role == "assistant" else None))
        self.written = len(messages)
        await self.write([*entries, *after])

    def started(self, calls: Sequence[ToolCall]) -> Entry:
        """The entry that marks calls as started: stored before they run."""
        return {"kind": "started", "run": self.run_id, "calls": [c.id for c in calls]}

    def handoff(self, record: Entry, usage: Entry) -> Entry:
        """The entry of a handoff (`HandoffRecord` as JSON data), each time it changes: made,
        taken up, returned from; with the usage of the agents that had the run before the one
        now in force, by model."""
        return {"kind": "handoff", "run": self.run_id, "record": record, "usage": usage}

    def finished(self, message: Message) -> None:
        """Queue a call's result for the writer (called on the event loop as it is filed)."""
        assert message.tool_call_id is not None
        self.results.add(message.tool_call_id)
        self._queue.append(self._entry(message))

    async def close(self, messages: Sequence[Message], usage: Any, stop_reason: str) -> None:
        """Journal what is left and mark the run ended; shielded from cancellation."""
        _ACTIVE.discard(self.run_id)
        with anyio.CancelScope(shield=True):
            end = {"kind": "end", "run": self.run_id, "stop_reason": stop_reason}
            await self.sync(messages, usage, after=[end])
