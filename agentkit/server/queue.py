"""A bounded queue in front of the runtime: as many generations as it has slots, a waiting line
for the rest."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar

import anyio

from agentkit.model_api import Generation, ModelRequest, StreamChunk
from agentkit.runtimes.base import Runtime
from agentkit.runtimes.wrapper import RuntimeWrapper
from agentkit.server.errors import OUT_OF_CAPACITY, ApiError

__all__ = ["ModelQueue", "QueuedRuntime", "as_generator"]

T = TypeVar("T")


class ModelQueue:
    """Lets `slots` requests use the model at once while at most `max_waiting` others wait, in
    order.

    A request that finds the slots and the waiting line full is refused at once with HTTP 429,
    code 3040 (out of capacity): the answer clients retry with backoff.
    """

    def __init__(self, max_waiting: int, slots: int = 1) -> None:
        if max_waiting < 0:
            raise ValueError(f"max_queue: must be >= 0 (got {max_waiting})")
        if slots < 1:
            raise ValueError(f"slots: must be >= 1 (got {slots})")
        self.max_waiting = max_waiting
        self.slots = slots
        # A semaphore, not a lock: a stream may be closed from another task than its opener.
        self._semaphore = anyio.Semaphore(slots)
        self.waiting = 0
        """Requests waiting for the model right now."""

    @property
    def busy(self) -> bool:
        """Every slot is generating for someone."""
        return self._semaphore.value == 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for the model (or be refused), and hold it for the block.

        Raises:
            ApiError: 429 with code 3040 when `max_waiting` requests already wait.
        """
        if self.busy and self.waiting >= self.max_waiting:
            raise ApiError(
                429,
                OUT_OF_CAPACITY,
                f"out of capacity: all {self.slots} slot(s) of the model are busy and "
                f"{self.waiting} request(s) are waiting (max_queue={self.max_waiting}); "
                "retry later",
            )
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()


class QueuedRuntime(RuntimeWrapper):
    """A runtime whose every generation (or whole stream) first takes a slot of a queue."""

    def __init__(self, runtime: Runtime, queue: ModelQueue) -> None:
        super().__init__(runtime)
        self.queue = queue

    async def handle_generate(self, request: ModelRequest) -> Generation:
        async with self.queue.slot():
            return await self.runtime.generate(request)

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        # Closing this stream closes the runtime's at once, which stops its generation.
        async with (
            self.queue.slot(),
            aclosing(as_generator(self.runtime.stream(request))) as chunks,
        ):
            async for chunk in chunks:
                yield chunk

    async def aclose(self) -> None:
        await self.runtime.aclose()


async def as_generator(iterator: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """Any async iterator as an async generator, which `aclosing` can close: closing it closes
    the iterator too."""
    try:
        async for item in iterator:
            yield item
    finally:
        close: Any = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
