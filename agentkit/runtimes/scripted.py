"""Runtimes for tests, shipped in the package: canned turns, or a function that decides.

```python
runtime = ScriptedRuntime([
    ScriptedRuntime.call("add", a=2, b=3),
    ScriptedRuntime.answer("5"),
])
result = await Agent(runtime, tools=[add]).run("What is 2 + 3?")
runtime.assert_complete()
```
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from agentkit.model_api import Generation, ModelRequest, StreamChunk, ToolCall, Usage
from agentkit.runtimes.base import Capabilities, Runtime

__all__ = ["FunctionRuntime", "ScriptedRuntime", "Turn"]

Turn = Generation | str | BaseException
"""One scripted turn: a generation, a plain text answer, or an exception to raise."""

_CAPABILITIES = Capabilities(
    tool_choice=True,
    parallel_tool_calls=True,
    response_format=True,
    lora=True,
    raw=True,
    schema_dialect="full",
)


def _as_generation(turn: Generation | str) -> Generation:
    if isinstance(turn, str):
        return Generation(response=turn, finish_reason="stop")
    return turn


async def _chunks(generation: Generation) -> AsyncIterator[StreamChunk]:
    # Word-sized deltas, then the calls, then usage: the order real services use.
    text = generation.response
    start = 0
    while start < len(text):
        end = text.find(" ", start + 1)
        end = len(text) if end == -1 else end
        yield StreamChunk(response=text[start:end])
        start = end
    if generation.tool_calls:
        yield StreamChunk(tool_calls=generation.tool_calls)
    yield StreamChunk(usage=generation.usage, finish_reason=generation.finish_reason)


class ScriptedRuntime(Runtime):
    """Answers each request with the next canned turn, and records every request it saw.

    Args:
        turns: generations, text answers or exceptions, used in order.
        capabilities: what the runtime claims to support (all of it, by default).
    """

    name = "scripted"

    def __init__(
        self, turns: Iterable[Turn] = (), *, capabilities: Capabilities = _CAPABILITIES
    ) -> None:
        self._turns = list(turns)
        self._next = 0
        self.capabilities = capabilities
        self.requests: list[ModelRequest] = []
        """Every request received, in order."""
        self.streamed: list[bool] = []
        """For each request, whether it was streamed."""

    @staticmethod
    def answer(text: str, usage: Usage | None = None) -> Generation:
        """A turn that answers with `text`."""
        return Generation(response=text, usage=usage or Usage(), finish_reason="stop")

    @staticmethod
    def call(name: str, /, **arguments: Any) -> Generation:
        """A turn that calls one tool: `ScriptedRuntime.call("add", a=2, b=3)`."""
        return Generation(
            tool_calls=[ToolCall(name=name, arguments=arguments)], finish_reason="tool_calls"
        )

    @staticmethod
    def calls(*calls: tuple[str, dict[str, Any]], text: str = "") -> Generation:
        """A turn with several calls: `ScriptedRuntime.calls(("a", {...}), ("b", {...}))`."""
        return Generation(
            response=text,
            tool_calls=[ToolCall(name=n, arguments=a) for n, a in calls],
            finish_reason="tool_calls",
        )

    @property
    def remaining(self) -> int:
        """How many turns are left."""
        return len(self._turns) - self._next

    def add(self, *turns: Turn) -> None:
        """Append turns to the script."""
        self._turns.extend(turns)

    def assert_complete(self) -> None:
        """Fail if any scripted turn was never used.

        Raises:
            AssertionError: naming how many turns are left and the first of them.
        """
        if self.remaining:
            raise AssertionError(
                f"{self.remaining} scripted turn(s) were never used; "
                f"next was {self._turns[self._next]!r}"
            )

    def _take(self, request: ModelRequest, streamed: bool) -> Generation:
        self.requests.append(request)
        self.streamed.append(streamed)
        if self._next >= len(self._turns):
            raise AssertionError(
                f"the script has {len(self._turns)} turn(s) but request "
                f"{len(self.requests)} asked for another"
            )
        turn = self._turns[self._next]
        self._next += 1
        if isinstance(turn, BaseException):
            raise turn
        return _as_generation(turn)

    async def handle_generate(self, request: ModelRequest) -> Generation:
        return self._take(request, streamed=False)

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in _chunks(self._take(request, streamed=True)):
            yield chunk


Decide = Callable[[ModelRequest], "Generation | str | Awaitable[Generation | str]"]


class FunctionRuntime(Runtime):
    """A runtime whose every turn is decided by a plain function (sync or async) of the request.

    ```python
    def model(request: ModelRequest) -> Generation | str:
        if request.messages[-1].role == "tool":
            return "It is " + request.messages[-1].content
        return ScriptedRuntime.call("clock", zone="UTC")
    ```
    """

    name = "function"

    def __init__(self, decide: Decide, *, capabilities: Capabilities = _CAPABILITIES) -> None:
        self._decide = decide
        self.capabilities = capabilities
        self.requests: list[ModelRequest] = []

    async def handle_generate(self, request: ModelRequest) -> Generation:
        self.requests.append(request)
        turn = self._decide(request)
        if inspect.isawaitable(turn):
            turn = await turn
        return _as_generation(turn)

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in _chunks(await self.handle_generate(request)):
            yield chunk
