"""Approval over AG-UI: a run stopped by calls of the agent's own tools that wait for a person
ends with one interrupt per call; the next request's `resume` entries decide them, and the
run goes on from where it stopped (`agentkit.agent.approval`).

The paused run stays with the adapter, never with the front end: every interrupt id carries
an unguessable key (`<key>:<call id>`) under which its `RunState` waits. The store is bounded
in number and age; a run is resumed once.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from ag_ui.core import Interrupt, ResumeEntry

from agentkit.agent.approval import check_decisions
from agentkit.agent.results import RunState
from agentkit.errors import FieldError, RequestValidationError, RunStateError

__all__ = ["APPROVAL", "RESPONSE_SCHEMA", "PausedRuns"]

APPROVAL = "tool_approval"
"""The `reason` of the interrupt of a tool call waiting for a person's approval."""
RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean", "description": "Run the call (true) or not (false)."},
        "reason": {"type": "string", "description": "Why not: the model is told."},
    },
}
"""The `payload` a `resolved` resume entry may carry; none approves the call. A `cancelled`
entry denies it."""


class PausedRuns:
    """Runs waiting for decisions, by key.

    Args:
        limit: runs kept at once, a bound on memory; past it the oldest is pushed out.
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
        self._runs: OrderedDict[str, tuple[float, RunState]] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._runs)

    def put(self, state: RunState) -> list[Interrupt]:
        """Keep a paused run; an interrupt for each of its pending calls."""
        self._expire()
        key = secrets.token_urlsafe(24)
        self._runs[key] = (self._clock(), state)
        while len(self._runs) > self.limit:
            self._runs.popitem(last=False)
        return [
            Interrupt(
                id=f"{key}:{call.id}",
                reason=APPROVAL,
                # A tool that asked while it ran: its question; else what waits.
                message=call.question or f"{call.name} waits for approval to run",
                tool_call_id=call.id,
                response_schema=RESPONSE_SCHEMA,
            )
            for call in state.pending
        ]

    def decide(
        self, entries: Sequence[ResumeEntry], *, take: bool
    ) -> tuple[RunState, list[str], dict[str, str]]:
        """The run the entries answer, and their decisions: the calls to run and those not to
        (with the reason the model is told); with `take`, the run leaves the store.

        Raises:
            RequestValidationError: entries of no waiting run or of several, an entry that is
                not one of the run's interrupts, or a pending call left undecided.
        """
        self._expire()
        keys = {entry.interrupt_id.partition(":")[0] for entry in entries}
        found = self._runs.get(next(iter(keys))) if len(keys) == 1 else None
        if found is None:
            why = (
                "answers no paused run (it was resumed, expired or pushed out by newer ones)"
                if len(keys) == 1
                else f"must answer the interrupts of one run (got {len(keys)} runs)"
            )
            raise _bad("resume", why)
        state = found[1]
        approve: list[str] = []
        deny: dict[str, str] = {}
        for entry in entries:
            call_id = entry.interrupt_id.partition(":")[2]
            payload = entry.payload if isinstance(entry.payload, dict) else {}
            if entry.status == "resolved" and payload.get("approved", True) is not False:
                approve.append(call_id)
            else:
                reason = payload.get("reason")
                deny[call_id] = reason if isinstance(reason, str) else ""
        try:
            check_decisions(state, approve, deny)
        except RunStateError as exc:
            raise _bad("resume", "; ".join(exc.problems)) from None
        if take:
            del self._runs[next(iter(keys))]
        return state, approve, deny

    def _expire(self) -> None:
        cutoff = self._clock() - self.max_age
        while self._runs:
            key, (since, _) = next(iter(self._runs.items()))
            if since >= cutoff:
                break
            del self._runs[key]


def _bad(path: str, message: str) -> RequestValidationError:
    return RequestValidationError([FieldError(path, message)], "AG-UI run input")
