"""`Fallback`: runtimes tried in order, each behind a circuit breaker.

```python
runtime = Fallback([WorkersAI(), OpenAICompatible("https://api.example.com/v1")])
generation = await runtime.generate(request)
generation.runtime  # 'workers-ai:@cf/meta/llama-3.1-8b-instruct', or the second one's label
```

The next runtime is tried when one fails in a way another may not: a `TransportError` marked
`retryable` (a connection error, a timeout, 408, 409, 429, 5xx, a stream broken before its
first chunk), or an error of a class given in `on`. A request the service refused (400, a
daily limit such as Workers AI's code 3036, an authentication error, `UnsupportedFeature`)
would be refused again elsewhere, or is the caller's to fix: it is raised at once.

A stream falls over only before its first chunk. Once a chunk has reached the caller, the
answer has begun, and replaying it on another runtime would repeat text: a later error is
raised as it is.

Falling over takes seconds, not minutes: every runtime but the last is tried under a wait
deadline (`retry_wait`): its own retries may wait only that long, so a 429 asking for 60 s
is raised at once rather than slept out, and under an attempt deadline (`attempt_timeout`,
off by default) for the whole answer, or a stream's first chunk. The last runtime has nowhere
to fall over to: its own retries and deadlines apply in full.

Each runtime has a `CircuitBreaker`: `failures` failures within `window` seconds open it, and
the runtime is skipped (no request reaches it) for `cooldown` seconds; then one request probes
it (half-open): success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Literal

import anyio

from agentkit import telemetry
from agentkit.errors import ModelConnectionError, ModelTimeout, TransportError, UserError
from agentkit.model_api import FunctionDefinition, Generation, ModelRequest, StreamChunk
from agentkit.runtimes._wrapping import close_chunks, waits_until
from agentkit.runtimes.base import Capabilities, Runtime
from agentkit.usage import model_name

__all__ = ["BreakerState", "CircuitBreaker", "Fallback"]

log = logging.getLogger("agentkit.runtimes")

BreakerState = Literal["closed", "open", "half_open"]
"""`closed`: requests pass; `open`: the runtime is skipped; `half_open`: one probe is on its
way, the others skip it."""

Admission = Literal["pass", "probe"]


class CircuitBreaker:
    """Keeps requests away from a runtime that keeps failing.

    Closed, it lets every request through and counts failures; `failures` of them within
    `window` seconds open it. Open, it lets none through for `cooldown` seconds; then the first
    request to ask is the probe (half-open): while it is on its way the others are kept away,
    its success closes the breaker and its failure opens it again for another cool-down. An
    outcome that says nothing of the runtime's health (a request it refused, a cancellation)
    lets the next request probe instead.

    Args:
        failures: failures within `window` that open it (>= 1).
        window: seconds over which failures are counted (> 0).
        cooldown: seconds it stays open before a probe (>= 0).
        clock: seconds from a monotonic clock (tests pass a fake one).
        name: what it guards, for its log lines.
    """

    def __init__(
        self,
        failures: int = 5,
        window: float = 60.0,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "a runtime",
    ) -> None:
        if failures < 1:
            raise UserError(f"failures: must be >= 1 (got {failures})")
        if not window > 0:
            raise UserError(f"window: must be > 0 seconds (got {window})")
        if not cooldown >= 0:
            raise UserError(f"cooldown: must be >= 0 seconds (got {cooldown})")
        self.failures = failures
        self.window = window
        self.cooldown = cooldown
        self.name = name
        self._clock = clock
        self._failed: deque[float] = deque()
        self._state: BreakerState = "closed"
        self._opened = 0.0

    @property
    def state(self) -> BreakerState:
        """Where the breaker stands now (an open one whose cool-down is over stays `open`
        until a request probes it)."""
        return self._state

    def reopens_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self._state != "open":
            return 0.0
        return max(self._opened + self.cooldown - self._clock(), 0.0)

    def allow(self) -> Admission | None:
        """Whether a request may go to the runtime now: `pass`, `probe` (the one request of a
        half-open breaker), or None to skip the runtime."""
        if self._state == "closed":
            return "pass"
        if self._state == "open" and self._clock() >= self._opened + self.cooldown:
            self._state = "half_open"
            return "probe"
        return None

    def succeeded(self, admission: Admission) -> None:
        """The request let through answered."""
        if admission == "probe":
            self._state = "closed"
            self._failed.clear()

    def failed(self, admission: Admission) -> None:
        """The request let through failed in a way that falls over."""
        now = self._clock()
        if admission == "probe":
            self._open(now)
            return
        if self._state != "closed":
            return  # sent before the breaker opened: it is open already
        failed = self._failed
        failed.append(now)
        while failed and failed[0] <= now - self.window:
            failed.popleft()
        if len(failed) >= self.failures:
            self._open(now)

    def released(self, admission: Admission) -> None:
        """The request let through ended saying nothing of the runtime's health."""
        if admission == "probe" and self._state == "half_open":
            self._state = "open"
            self._opened = self._clock() - self.cooldown  # the next request probes

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened = now
        self._failed.clear()
        log.warning("circuit of %s open for %g s after failures", self.name, self.cooldown)


@dataclass(frozen=True)
class _Member:
    label: str
    """Tells the runtime apart in logs and breakers (`#2` on a repeated one)."""
    runtime: Runtime
    breaker: CircuitBreaker
    answered: str
    """What a generation it gave says of it: `name:model`, the model as usage books it (just
    the name for a runtime with no model of its own)."""


def _label(runtime: Runtime) -> str:
    model = model_name(runtime)
    return runtime.name if model == runtime.name else f"{runtime.name}:{model}"


def _labels(runtimes: Sequence[Runtime]) -> list[str]:
    """Each runtime's label; a repeated one gets `#2`, `#3`, ... so that each is told apart."""
    out: list[str] = []
    for runtime in runtimes:
        label = base = _label(runtime)
        n = 1
        while label in out:
            n += 1
            label = f"{base}#{n}"
        out.append(label)
    return out


def _shared(capabilities: Sequence[Capabilities]) -> Capabilities:
    """What every runtime honours: a request may reach any of them."""
    dialects = {c.schema_dialect for c in capabilities}
    if len(dialects) > 1 and not dialects <= {"full", "inline"}:
        raise UserError(
            f"runtimes: their tool schema dialects cannot be reconciled (got {sorted(dialects)})"
        )
    values: dict[str, Any] = {}
    for field in fields(Capabilities):
        if field.name == "sampling":
            values["sampling"] = frozenset.intersection(*(c.sampling for c in capabilities))
        elif field.name == "schema_dialect":
            # Schemas with references inlined are valid schemas for a runtime that takes any.
            values["schema_dialect"] = dialects.pop() if len(dialects) == 1 else "inline"
        else:
            values[field.name] = all(getattr(c, field.name) for c in capabilities)
    return Capabilities(**values)


class Fallback(Runtime):
    """Runtimes tried in order until one answers (see the module's docstring).

    It honours what every one of its runtimes honours, takes its profile, slots and model name
    from the first, and puts on each answer (`Generation.runtime`, a stream's first chunk)
    which runtime gave it: the runtime's name and model, e.g. `openai:gpt-4o-mini`.

    Args:
        runtimes: the runtimes, first choice first.
        on: more error classes to fall over on, besides retryable transport errors.
        retry_wait: seconds that each runtime but the last may spend waiting to retry (its
            `RetryPolicy` backoff or a `Retry-After`) before its error falls over; None lets
            it wait as its policy says.
        attempt_timeout: seconds each runtime but the last has to answer (a stream: to send
            its first chunk) before the next is tried; None: no bound but the runtime's own.
        failures: failures within `window` seconds that open a runtime's circuit breaker.
        window: seconds over which failures are counted.
        cooldown: seconds an open breaker keeps requests away before a probe.
        clock: seconds from a monotonic clock, for the breakers (tests pass a fake one).
        owns: close the runtimes when this one closes. By default it does not: whoever made
            them closes them (they may serve elsewhere too).

    Raises:
        UserError: no runtimes, a bound out of range (named), or runtimes whose tool schema
            dialects cannot be reconciled.
    """

    name = "fallback"

    def __init__(
        self,
        runtimes: Sequence[Runtime],
        *,
        on: Sequence[type[Exception]] = (),
        retry_wait: float | None = 2.0,
        attempt_timeout: float | None = None,
        failures: int = 5,
        window: float = 60.0,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        owns: bool = False,
    ) -> None:
        runtimes = list(runtimes)
        if not runtimes:
            raise UserError("runtimes: Fallback needs at least one runtime (got none)")
        if retry_wait is not None and not retry_wait >= 0:
            raise UserError(f"retry_wait: must be >= 0 seconds (got {retry_wait})")
        if attempt_timeout is not None and not attempt_timeout > 0:
            raise UserError(f"attempt_timeout: must be > 0 seconds (got {attempt_timeout})")
        self.members = [
            _Member(
                label,
                runtime,
                CircuitBreaker(failures, window, cooldown, clock, label),
                _label(runtime),
            )
            for label, runtime in zip(_labels(runtimes), runtimes, strict=True)
        ]
        """Each runtime, in order, with its label and its breaker."""
        self.on = tuple(on)
        self.retry_wait = retry_wait
        self.attempt_timeout = attempt_timeout
        self.owns = owns
        primary = runtimes[0]
        self.capabilities = _shared([r.capabilities for r in runtimes])
        self.profile = primary.profile
        self.slots = primary.slots
        self.model = model_name(primary)

    def __repr__(self) -> str:
        return f"Fallback({[m.label for m in self.members]!r})"

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        """Each runtime's circuit breaker, by label."""
        return {m.label: m.breaker for m in self.members}

    def check_tools(self, tools: Sequence[FunctionDefinition]) -> None:
        for member in self.members:
            member.runtime.check_tools(tools)

    def check_response_format(
        self,
        response_format: Mapping[str, Any],
        *,
        validated: bool = True,
        with_calls: bool = False,
    ) -> None:
        for member in self.members:
            if member.runtime.capabilities.response_format:
                member.runtime.check_response_format(
                    response_format, validated=validated, with_calls=with_calls
                )

    def _falls_over(self, error: BaseException) -> bool:
        if isinstance(error, TransportError) and error.retryable:
            return True
        return isinstance(error, self.on)

    @contextmanager
    def _bounded(self, index: int, label: str) -> Iterator[None]:
        """The deadlines of an attempt on the runtime at `index`: none on the last one."""
        if index == len(self.members) - 1:
            yield
            return
        timeout = self.attempt_timeout
        with waits_until(self.retry_wait):
            if timeout is None:  # no cancel scope: it costs more than the rest of the wrapper
                yield
                return
            try:
                with anyio.fail_after(timeout):
                    yield
            except TimeoutError:
                raise ModelTimeout(
                    f"{label} gave no answer within the attempt deadline of {timeout:g} s",
                    retryable=True,
                ) from None

    def _failed(
        self, member: _Member, admission: Admission, error: BaseException
    ) -> tuple[str, Exception]:
        """Settle a failed attempt with the breaker; raise the error unless it falls over."""
        if not isinstance(error, Exception) or not self._falls_over(error):
            member.breaker.released(admission)
            raise error
        member.breaker.failed(admission)
        log.warning("%s failed, trying the next runtime: %s", member.label, error)
        telemetry.fell_over(member.label, error)
        return member.label, error

    def _exhausted(self, errors: list[tuple[str, Exception]]) -> Exception:
        """The error to raise when no runtime answered: the last one's (each failure before it
        was logged on `agentkit.runtimes`)."""
        if not errors:
            waits = ", ".join(
                f"{m.label} for {m.breaker.reopens_in():.3g} s more" for m in self.members
            )
            return ModelConnectionError(
                f"no runtime to try: each one's circuit is open ({waits})", retryable=True
            )
        return errors[-1][1]

    async def handle_generate(self, request: ModelRequest) -> Generation:
        errors: list[tuple[str, Exception]] = []
        for index, member in enumerate(self.members):
            admission = member.breaker.allow()
            if admission is None:
                continue
            try:
                with self._bounded(index, member.label):
                    generation = await member.runtime.generate(request)
            except BaseException as exc:
                errors.append(self._failed(member, admission, exc))
                continue
            member.breaker.succeeded(admission)
            if generation.runtime is None:  # a nested wrapper's own choice is more precise
                generation = generation.model_copy(update={"runtime": member.answered})
            return generation
        raise self._exhausted(errors)

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        errors: list[tuple[str, Exception]] = []
        for index, member in enumerate(self.members):
            admission = member.breaker.allow()
            if admission is None:
                continue
            chunks: AsyncIterator[StreamChunk] | None = None
            try:
                chunks = member.runtime.stream(request)
                with self._bounded(index, member.label):
                    first = await anext(chunks, None)
            except BaseException as exc:
                await close_chunks(chunks)
                errors.append(self._failed(member, admission, exc))
                continue
            member.breaker.succeeded(admission)
            try:
                if first is None:
                    return
                if first.runtime is None:
                    first = first.model_copy(update={"runtime": member.answered})
                yield first
                # From here on the answer has begun: an error is the caller's, not replayed.
                async for chunk in chunks:
                    yield chunk
            except TransportError:
                member.breaker.failed("pass")
                raise
            finally:
                await close_chunks(chunks)
            return
        raise self._exhausted(errors)

    async def aclose(self) -> None:
        """Close the runtimes if this wrapper owns them (`owns=True`); else nothing."""
        if self.owns:
            for member in self.members:
                await member.runtime.aclose()
