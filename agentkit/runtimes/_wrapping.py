"""What the wrappers share: how long the runtimes below one may wait, and closing a stream.

A wrapper that has somewhere else to go (`Fallback`) does not want the runtime it tries to
sleep out a minute-long `Retry-After` first: it sets a deadline, in the event loop's clock, for
the calls it makes, and a runtime asked to wait past it gives up at once instead, with the error
that made it wait (`HTTPClient` retries, `RateLimit` queues). A wrapper that waits for the
service on behalf of all its callers (`RateLimit`) takes on the waits the service asks for
(`Retry-After`): the runtime below raises them at once, and the wrapper pauses everyone. Context
variables carry both, so every wrapper in between passes them on without knowing of them.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import anyio

from agentkit.model_api import StreamChunk

__all__ = [
    "SERVICE_WAITS_ABOVE",
    "WAIT_DEADLINE",
    "close_chunks",
    "service_waits_above",
    "wait_refused",
    "waits_until",
]

WAIT_DEADLINE: ContextVar[float] = ContextVar("agentkit_wait_deadline", default=math.inf)
"""The time (`anyio.current_time()`) no wait for a retry or a rate limit may pass."""
SERVICE_WAITS_ABOVE: ContextVar[bool] = ContextVar("agentkit_service_waits_above", default=False)
"""Whether a wrapper above waits out what the service asks for (`Retry-After`) itself."""


def wait_refused(delay: float, asked: bool) -> bool:
    """Whether a runtime must raise its error rather than wait `delay` seconds to retry: the
    wait would pass the deadline, or the service asked for it (`asked`) and a wrapper above
    takes such waits on itself."""
    if anyio.current_time() + delay > WAIT_DEADLINE.get():
        return True
    return asked and delay > 0 and SERVICE_WAITS_ABOVE.get()


@contextmanager
def service_waits_above() -> Iterator[None]:
    """Within it, the waits a service asks for are raised to the caller (see the module)."""
    token = SERVICE_WAITS_ABOVE.set(True)
    try:
        yield
    finally:
        SERVICE_WAITS_ABOVE.reset(token)


@contextmanager
def waits_until(seconds: float | None) -> Iterator[None]:
    """Within it, no retry or rate-limit wait may end more than `seconds` from now (None: no
    new bound). An outer, earlier deadline stays in force."""
    if seconds is None:
        yield
        return
    deadline = min(anyio.current_time() + seconds, WAIT_DEADLINE.get())
    token = WAIT_DEADLINE.set(deadline)
    try:
        yield
    finally:
        WAIT_DEADLINE.reset(token)


async def close_chunks(chunks: AsyncIterator[StreamChunk] | None) -> None:
    """Close a runtime's stream (an async generator) that may not have run to its end, so that
    its connection is given back now rather than when it is collected."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
