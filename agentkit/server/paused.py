"""Runs of the playground's agent that wait for approval, kept on the server.

The page never holds the transcript of a paused run: it gets an unguessable key, and sends the
decisions with it (`POST /playground/resume`). The store is bounded in number and age: past
`limit` runs the oldest is forgotten, and a run waits at most `max_age` seconds.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from agentkit.agent import Agent
from agentkit.server.errors import BAD_INPUT, ApiError
from agentkit.state import RunState

__all__ = ["PausedRuns", "read_decisions"]


class PausedRuns:
    """Paused runs by key: the agent that paused each (with the page's settings) and its state.

    Args:
        limit: runs kept at once; a new one past it pushes out the oldest.
        max_age: seconds a run may wait for its decisions.
        clock: the time, in seconds (a monotonic clock unless a test gives another).
    """

    def __init__(
        self,
        limit: int = 64,
        max_age: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.max_age = max_age
        self._clock = clock
        self._runs: OrderedDict[str, tuple[float, Agent, RunState]] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._runs)

    def put(self, agent: Agent, state: RunState) -> str:
        """Keep a paused run; its key (URL-safe, 192 random bits)."""
        self._expire()
        key = secrets.token_urlsafe(24)
        self._runs[key] = (self._clock(), agent, state)
        while len(self._runs) > self.limit:
            self._runs.popitem(last=False)
        return key

    def peek(self, key: Any) -> tuple[Agent, RunState]:
        """The run under `key`, left in place.

        Raises:
            ApiError: 404 when no run waits under that key (never one, expired, or resumed).
        """
        self._expire()
        found = self._runs.get(key) if isinstance(key, str) else None
        if found is None:
            raise ApiError(
                404,
                BAD_INPUT,
                "Bad input: run: no paused run under this key (it was resumed, expired or "
                "pushed out by newer ones)",
            )
        return found[1], found[2]

    def take(self, key: str) -> tuple[Agent, RunState]:
        """The run under `key`, removed: a paused run is resumed once."""
        found = self.peek(key)
        del self._runs[key]
        return found

    def _expire(self) -> None:
        cutoff = self._clock() - self.max_age
        while self._runs:
            key, (since, _, _) = next(iter(self._runs.items()))
            if since >= cutoff:
                break
            del self._runs[key]


def read_decisions(body: dict[str, Any], state: RunState) -> tuple[list[str], dict[str, str]]:
    """`approve` (ids) and `deny` (id -> reason) from a body, checked against the pending calls.

    Raises:
        ApiError: 400 naming what is wrong: a bad shape, ids not pending, calls undecided.
    """
    approve = body.get("approve", [])
    deny = body.get("deny", {})
    if not isinstance(approve, list) or not all(isinstance(i, str) for i in approve):
        raise ApiError(400, BAD_INPUT, "Bad input: approve: must be a list of call ids")
    if not isinstance(deny, dict) or not all(isinstance(r, str) for r in deny.values()):
        raise ApiError(400, BAD_INPUT, "Bad input: deny: must map call ids to reasons (text)")
    pending = [call.id for call in state.pending]
    unknown = sorted({*approve, *deny} - set(pending))
    if unknown:
        raise ApiError(400, BAD_INPUT, f"Bad input: not pending: {', '.join(unknown)}")
    both = sorted(set(approve) & deny.keys())
    if both:
        raise ApiError(400, BAD_INPUT, f"Bad input: both approved and denied: {', '.join(both)}")
    undecided = [i for i in pending if i not in approve and i not in deny]
    if undecided:
        raise ApiError(400, BAD_INPUT, f"Bad input: undecided: {', '.join(undecided)}")
    return approve, deny
