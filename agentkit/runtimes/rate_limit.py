"""`RateLimit`: a runtime kept within a service's request, token and concurrency limits.

```python
runtime = RateLimit(WorkersAI(), requests_per_minute=300, tokens_per_minute=100_000)
agents = [Agent(runtime, tools=[...]) for _ in range(50)]  # one limit, shared by all of them
```

A request waits for room rather than fail; only when no room comes within `max_wait` seconds
is it refused, with `agentkit.errors.RateLimited` naming the limit (no HTTP status: it never
left the process). Waiting requests go in the order they came.

How the limits count: a sliding window, not a refilling bucket. A request may start when,
counting it, at most `requests_per_minute * window / 60` requests, and at most
`tokens_per_minute * window / 60` tokens, started within the last `window` seconds. So the
limit holds in *every* window of that length, wherever it begins: there is no burst on top of
it (a bucket that refills lets a full bucket through and then its refill within the same
minute, up to twice the limit, which a service counting per minute refuses). `window` is 60 s
by default; a shorter one spreads the requests more evenly, and keeps the per-minute limit too
(any minute is covered by the shorter windows in it).

Tokens are counted before the call from an estimate: the request's text at four characters a
token plus its `max_tokens` (an answer may use them all). Once the answer reports its usage,
the count is corrected to the usage's total: an answer shorter than `max_tokens` gives the
rest back to the waiting requests.

A service's `Retry-After` pauses the limiter for everyone for that long, not just the request
that met it: the runtime inside raises it at once rather than sleep it out alone, and the
request goes again after the pause, if that is within its wait (else the service's
`RateLimited` is raised).
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from agentkit.errors import RateLimited, UserError
from agentkit.model_api import Generation, ModelRequest, StreamChunk, Usage
from agentkit.runtimes._wrapping import WAIT_DEADLINE, close_chunks, service_waits_above
from agentkit.runtimes.base import Runtime
from agentkit.runtimes.wrapper import RuntimeWrapper

__all__ = ["RateLimit", "estimate_tokens"]

CHARS_PER_TOKEN = 4
"""How many characters of text make a token, for estimates (a little generous for English)."""


def estimate_tokens(request: ModelRequest) -> int:
    """The tokens a request may use at most, estimated before it is sent: its text (messages,
    tool calls, tool definitions, a raw prompt) at `CHARS_PER_TOKEN` characters a token, four
    more per message, and all of its `max_tokens`."""
    chars = len(request.raw_prompt or "")
    for message in request.messages:
        chars += len(message.content) + 4 * CHARS_PER_TOKEN
        for call in message.tool_calls:
            chars += len(call.name) + len(json.dumps(call.arguments))
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return -(-chars // CHARS_PER_TOKEN) + request.max_tokens


@dataclass(slots=True)
class _Sent:
    """A request counted in the window: when it started and its tokens (an estimate until
    its usage is known)."""

    at: float
    tokens: int
    counted: bool = True
    """Still in the window (False once it has left it)."""


def _per_window(name: str, per_minute: float | None, window: float) -> float | None:
    if per_minute is None:
        return None
    if not per_minute > 0:
        raise UserError(f"{name}: must be > 0 (got {per_minute})")
    allowed = per_minute * window / 60
    if allowed < 1:
        raise UserError(
            f"{name}: {per_minute:g} a minute allows no request in a window of {window:g} s "
            "(make the window longer)"
        )
    return allowed


class RateLimit(RuntimeWrapper):
    """A runtime whose requests wait for room within its limits (see the module's docstring).

    Every caller of the same instance shares its limits: give all the agents that call one
    service the same wrapper. It takes its name, capabilities, profile, slots and model from
    the runtime it wraps.

    Args:
        runtime: the runtime to limit.
        requests_per_minute: requests that may start in a minute; None: no limit.
        tokens_per_minute: tokens (prompt and answer) a minute's requests may use; None: no
            limit.
        max_concurrency: requests that may be on their way at once; None: no limit.
        max_wait: the longest a request waits for room before `RateLimited` is raised. A
            wrapper's shorter deadline (`Fallback`'s `retry_wait`) takes precedence.
        window: seconds over which requests and tokens are counted (the per-minute limits
            are prorated to it).
        clock: seconds from a monotonic clock.
        owns: close the wrapped runtime when this one closes. By default it does not: whoever
            made it closes it.

    Raises:
        UserError: a limit or a duration out of range, named with its value.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_concurrency: int | None = None,
        max_wait: float = 60.0,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        owns: bool = False,
    ) -> None:
        if not window > 0:
            raise UserError(f"window: must be > 0 seconds (got {window})")
        if not max_wait >= 0:
            raise UserError(f"max_wait: must be >= 0 seconds (got {max_wait})")
        if max_concurrency is not None and max_concurrency < 1:
            raise UserError(f"max_concurrency: must be >= 1 (got {max_concurrency})")
        super().__init__(runtime)
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.max_concurrency = max_concurrency
        self.max_wait = max_wait
        self.window = window
        self.owns = owns
        self._requests = _per_window("requests_per_minute", requests_per_minute, window)
        self._tokens_allowed = _per_window("tokens_per_minute", tokens_per_minute, window)
        self._clock = clock
        self._sent: deque[_Sent] = deque()
        self._tokens = 0
        """Tokens of the requests in the window."""
        self._running = 0
        self._paused_until = -math.inf
        self._queue: deque[object] = deque()
        self._changed: anyio.Event | None = None
        self._loop: object = None
        model = getattr(runtime, "model", None)
        if model is not None:
            self.model = model

    def __repr__(self) -> str:
        limits = {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "max_concurrency": self.max_concurrency,
        }
        shown = ", ".join(f"{k}={v:g}" for k, v in limits.items() if v is not None)
        return f"RateLimit({self.runtime!r}{', ' if shown else ''}{shown})"

    # -- the window ---------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        sent, start = self._sent, now - self.window
        while sent and sent[0].at <= start:
            gone = sent.popleft()
            gone.counted = False
            self._tokens -= gone.tokens

    def _wait(self, tokens: int, now: float) -> tuple[float, str]:
        """Seconds until a request of `tokens` may start (0: now; inf: when one ends), and
        the limit it waits for."""
        if self._paused_until > now:
            return self._paused_until - now, "the service's Retry-After"
        if self.max_concurrency is not None and self._running >= self.max_concurrency:
            return math.inf, f"max_concurrency={self.max_concurrency}"
        self._expire(now)
        sent = self._sent
        wait, limit = 0.0, ""
        allowed = self._requests
        if allowed is not None and len(sent) + 1 > allowed:
            # Room comes when enough of the oldest leave the window.
            oldest = sent[len(sent) - int(allowed)]
            wait = oldest.at + self.window - now
            limit = f"requests_per_minute={self.requests_per_minute:g}"
        budget = self._tokens_allowed
        if budget is not None and self._tokens + tokens > budget:
            over = self._tokens + tokens - budget
            for entry in sent:
                over -= entry.tokens
                if over <= 0:
                    break
            until = entry.at + self.window - now
            if until > wait:
                wait, limit = until, f"tokens_per_minute={self.tokens_per_minute:g}"
        return wait, limit

    def _event(self) -> anyio.Event:
        loop = anyio.lowlevel.current_token()
        if self._changed is None or self._loop != loop:
            self._changed, self._loop = anyio.Event(), loop
        return self._changed

    def _notify(self) -> None:
        """Wake the waiting requests: something changed that may make room."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _tokens_of(self, request: ModelRequest) -> int:
        """The tokens to count for `request` (none without a token limit).

        Raises:
            UserError: the request could never fit the token limit.
        """
        budget = self._tokens_allowed
        if budget is None:
            return 0
        tokens = estimate_tokens(request)
        if tokens > budget:
            raise UserError(
                f"tokens_per_minute: the request may use {tokens} tokens (an estimate of its "
                f"prompt, and its max_tokens), more than the {budget:g} allowed in "
                f"{self.window:g} s; lower max_tokens or raise the limit"
            )
        return tokens

    def _bound(self) -> float:
        """The longest a request may wait from now: `max_wait`, or a wrapper's shorter bound
        (in the event loop's clock, where this one's may be another)."""
        return min(self.max_wait, WAIT_DEADLINE.get() - anyio.current_time())

    async def _acquire(self, tokens: int, bound: float, deadline: float) -> _Sent:
        """Wait for room for a request of `tokens` until `deadline`, count it, and return its
        entry."""
        clock = self._clock
        now = clock()
        ticket = object()
        queue = self._queue
        queue.append(ticket)
        try:
            while True:
                wait, limit = self._wait(tokens, now) if queue[0] is ticket else (math.inf, "")
                if wait <= 0:
                    entry = _Sent(now, tokens)
                    self._sent.append(entry)
                    self._tokens += tokens
                    self._running += 1
                    queue.popleft()
                    self._notify()  # the next in line may go too
                    return entry
                left = deadline - now
                if left <= 0 or (wait != math.inf and wait > left):
                    raise self._refused(limit or "its turn behind others", bound, wait)
                with anyio.move_on_after(min(wait, left)):
                    await self._event().wait()
                now = clock()
        finally:
            if ticket in queue:  # refused or cancelled while waiting
                queue.remove(ticket)
                self._notify()

    def _refused(self, limit: str, bound: float, wait: float) -> RateLimited:
        room = "" if wait == math.inf else f" (room in {wait:.3g} s)"
        return RateLimited(
            f"rate limit of the {self.runtime.name} runtime: no room within "
            f"{max(bound, 0):.3g} s under {limit}{room}",
            status=None,
            retry_after=None if wait == math.inf else wait,
        )

    def _done(self, entry: _Sent, usage: Usage | None) -> None:
        """A request ended: it no longer runs, and its reported usage replaces its estimate."""
        self._running -= 1
        if usage is not None and usage.total_tokens and entry.counted:
            self._tokens += usage.total_tokens - entry.tokens
            entry.tokens = usage.total_tokens
        self._notify()

    def _paused(self, error: RateLimited, deadline: float) -> bool:
        """The service asked to wait (`Retry-After`): nobody sends until then. Whether the
        request that met it may go again before its `deadline`."""
        if error.status is None or not error.retry_after:
            return False  # this limiter's own refusal, or no wait asked for
        until = self._clock() + error.retry_after
        self._paused_until = max(self._paused_until, until)
        return until <= deadline

    # -- the runtime --------------------------------------------------------------------------

    async def handle_generate(self, request: ModelRequest) -> Generation:
        tokens, bound = self._tokens_of(request), self._bound()
        deadline = self._clock() + bound
        while True:
            entry = await self._acquire(tokens, bound, deadline)
            usage = None
            try:
                with service_waits_above():
                    generation = await self.runtime.generate(request)
                usage = generation.usage
                return generation
            except RateLimited as exc:
                if not self._paused(exc, deadline):
                    raise
            finally:
                self._done(entry, usage)

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        tokens, bound = self._tokens_of(request), self._bound()
        deadline = self._clock() + bound
        while True:
            entry = await self._acquire(tokens, bound, deadline)
            usage = None
            chunks = None
            began = False
            try:
                chunks = self.runtime.stream(request)
                # Only until the first chunk: a service's 429 comes before any; after it the
                # consumer's context, which this generator shares, is left as it was.
                with service_waits_above():
                    chunk = await anext(chunks, None)
                while chunk is not None:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    began = True
                    yield chunk
                    chunk = await anext(chunks, None)
                return
            except RateLimited as exc:
                if not self._paused(exc, deadline) or began:
                    raise  # (begun, the answer is not sent again: its text would repeat)
            finally:
                await close_chunks(chunks)
                self._done(entry, usage)

    async def aclose(self) -> None:
        """Close the wrapped runtime if this wrapper owns it (`owns=True`); else nothing."""
        if self.owns:
            await self.runtime.aclose()
