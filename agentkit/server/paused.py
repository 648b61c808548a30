"""Runs of the playground's agent that wait for approval, kept on the server.

The page never holds the transcript of a paused run: it gets an unguessable key, and sends the
decisions with it (`POST /playground/resume`). The store is bounded in number and age, and
shared fairly between callers (`caller`): a caller past `per_caller` waiting runs pushes out
its own oldest, never another's; past `limit` in all, the caller holding the most gives way;
a run waits at most `max_age` seconds.

Pushing out, rather than refusing with a 429, because a run is known to pause only at the end
of its stream, after the 200 went out; and a page whose user leaves calls undecided keeps
working.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from agentkit.agent import Agent
from agentkit.agent.results import RunState
from agentkit.server.errors import BAD_INPUT, ApiError

__all__ = ["PausedRuns", "caller", "read_decisions"]

log = logging.getLogger("agentkit.server")


def caller(request: Request, api_token: str | None) -> str:
    """Whom a paused run belongs to: the page's `Origin` for a browser (a page cannot forge
    it), else the peer's address; with a token, also a hash of the token (never the token).

    On loopback every local program has the same peer address, so they count as one caller,
    apart from each page; a local program can claim any `Origin`, which only a token stops.
    """
    origin = request.headers.get("origin")
    who = f"origin {origin}" if origin else f"peer {request.client.host if request.client else ''}"
    if api_token is not None:
        who = f"token {hashlib.sha256(api_token.encode()).hexdigest()[:16]}, {who}"
    return who


class PausedRuns:
    """Paused runs by key: the agent that paused each (with the page's settings) and its state.

    Args:
        limit: runs kept at once, a bound on memory; past it, the oldest run of the caller
            holding the most is pushed out.
        per_caller: runs kept at once for one caller; past it, that caller's oldest is pushed
            out.
        max_age: seconds a run may wait for its decisions.
        clock: the time, in seconds (a monotonic clock unless a test gives another).
    """

    def __init__(
        self,
        limit: int = 64,
        per_caller: int = 16,
        max_age: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.per_caller = per_caller
        self.max_age = max_age
        self._clock = clock
        self._runs: OrderedDict[str, tuple[float, str, Agent, RunState]] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._runs)

    def put(self, agent: Agent, state: RunState, caller: str = "") -> str:
        """Keep a paused run of `caller`; its key (URL-safe, 192 random bits)."""
        self._expire()
        key = secrets.token_urlsafe(24)
        self._runs[key] = (self._clock(), caller, agent, state)
        mine = [k for k, run in self._runs.items() if run[1] == caller]
        if len(mine) > self.per_caller:
            del self._runs[mine[0]]
            log.warning(
                "paused runs: a caller past its cap of %d waiting runs pushed out its oldest "
                "(%d were waiting)",
                self.per_caller,
                len(mine),
            )
        if len(self._runs) > self.limit:
            held = Counter(run[1] for run in self._runs.values())
            most = max(held.values())
            del self._runs[next(k for k, run in self._runs.items() if held[run[1]] == most)]
            log.warning(
                "paused runs: %d were waiting, past the bound of %d; the oldest run of the "
                "caller holding the most (%d) was pushed out",
                self.limit + 1,
                self.limit,
                most,
            )
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
        return found[2], found[3]

    def take(self, key: str) -> tuple[Agent, RunState]:
        """The run under `key`, removed: a paused run is resumed once."""
        found = self.peek(key)
        del self._runs[key]
        return found

    def _expire(self) -> None:
        cutoff = self._clock() - self.max_age
        while self._runs:
            key, (since, *_) = next(iter(self._runs.items()))
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
