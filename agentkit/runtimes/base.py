"""The Runtime base: one request object in, one generation (or a stream of chunks) out.

In the manner of httpx's transports, a runtime implements one method, `handle_stream`; the base
derives `generate` from it (a runtime may override `handle_generate` when it has a better way),
checks once, in `check`, that the runtime honours every field the request uses, and makes the
runtime an async context manager. New options become fields of `ModelRequest`, never new
parameters.

```python
class Echo(Runtime):
    name = "echo"
    capabilities = Capabilities(tools=False)

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(response=request.messages[-1].content)
```
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any

from agentkit.errors import UnsupportedFeature
from agentkit.model_api import (
    SAMPLING_FIELDS,
    FunctionDefinition,
    Generation,
    ModelRequest,
    SchemaDialect,
    StreamChunk,
    ToolChoice,
)
from agentkit.wire.workers_ai import GenerationRequest

__all__ = ["DEFAULT_PARALLEL", "Capabilities", "Profile", "Runtime", "SchemaDialect"]

_REASONS = {
    "tools": "this runtime cannot call tools",
    "tool_choice": "only 'auto' is supported",
    "parallel_tool_calls": "the number of calls per answer cannot be set here",
    "response_format": "this runtime cannot hold its answer to a format",
    "lora": "this runtime cannot apply LoRA adapters",
    "raw_prompt": "this runtime always applies a chat template",
}


@dataclass(frozen=True)
class Capabilities:
    """Which fields of a `ModelRequest` a runtime honours; a request that uses any other is
    refused with `UnsupportedFeature` before anything is sent."""

    tools: bool = True
    """Takes tool definitions and answers with tool calls."""
    tool_choice: bool = False
    """Honours `tool_choice` values other than `auto`."""
    parallel_tool_calls: bool = False
    """Honours `parallel_tool_calls`."""
    response_format: bool = False
    """Holds the answer to `response_format`."""
    lora: bool = False
    """Applies a named LoRA adapter (`lora`)."""
    raw: bool = False
    """Takes a raw prompt with no chat template (`raw_prompt`)."""
    sampling: frozenset[str] = frozenset(SAMPLING_FIELDS)
    """The sampling fields it honours (`max_tokens` and `temperature` always)."""
    schema_dialect: SchemaDialect = "inline"
    """The tool schema dialect the model is sent."""

    def honours(self, name: str) -> bool:
        """Whether a request may use the field `name`."""
        if name in SAMPLING_FIELDS:
            return name in self.sampling
        flag = "raw" if name == "raw_prompt" else name
        return bool(getattr(self, flag, False))


@dataclass(frozen=True)
class Profile:
    """Defaults for a runtime's model, which an Agent merges under its user's settings.

    A small model may need a forced first call and greedy sampling to call tools at all; the
    defaults live here, with the model, so every caller (library, CLI, playground) gets them.
    """

    tool_choice: ToolChoice = "auto"
    """The first step's tool choice when the Agent is given none."""
    sampling: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Sampling fields (`temperature`, ...) used unless the Agent sets them."""


DEFAULT_PARALLEL = 4
"""Slots the local runtime generates in at once unless told otherwise (llama.cpp's server has
as many by default)."""


class Runtime(abc.ABC):
    """A model behind one request type. Implementations must be safe to call concurrently.

    Subclasses set `name` and `capabilities` (and may set `profile`) and implement
    `handle_stream`. Callers use `generate`, `stream` and `aclose`, or `async with runtime:`.
    """

    name: str = "runtime"
    """Short name used in messages: `local`, `workers-ai`, `openai`, `scripted`, ..."""
    capabilities: Capabilities = Capabilities()
    profile: Profile = Profile()
    slots: int = 1
    """Generations the runtime runs at once; a server in front of it lets this many through
    and queues the rest."""

    @abc.abstractmethod
    def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """The generation as chunks; joined, they make the whole generation. The request has
        been checked already: it uses only fields this runtime honours."""

    async def handle_generate(self, request: ModelRequest) -> Generation:
        """One whole generation; by default, the chunks of `handle_stream` joined."""
        return StreamChunk.join([chunk async for chunk in self.handle_stream(request)])

    def check_tools(self, tools: Sequence[FunctionDefinition]) -> None:
        """Refuse, before any run, a tool this runtime could not offer its model; by default
        every tool is fine. An Agent calls it when it is built.

        Raises:
            AgentKitError: naming the tool and what is wrong with it.
        """
        del tools  # any tool will do unless a runtime says otherwise

    def check_response_format(
        self,
        response_format: Mapping[str, Any],
        *,
        validated: bool = True,
        with_calls: bool = False,
    ) -> None:
        """Refuse, before any run, an answer format (`response_format`) this runtime could not
        hold its model to; by default any will do. Only runtimes whose capabilities include
        `response_format` are asked. An Agent calls it when it is built.

        Args:
            response_format: `{type: "json_object"}` or `{type: "json_schema", json_schema}`.
            validated: the caller validates every answer against the schema afterwards, so a
                keyword the runtime cannot hold may be left to it; when False (a server whose
                clients run no validator of ours) such a keyword is refused.
            with_calls: the request offers tools with `tool_choice` `auto`, so the answer may
                be a tool call instead; a runtime that holds that choice another way checks
                the format for it too.

        Raises:
            AgentKitError: naming the schema keyword and its path.
        """
        del (
            response_format,
            validated,
            with_calls,
        )  # any format will do unless a runtime says otherwise

    def check(self, request: ModelRequest | GenerationRequest) -> ModelRequest:
        """The request as a `ModelRequest`, if this runtime honours every field it uses.

        A Workers AI `GenerationRequest` is read as its `to_model()`.

        Raises:
            UnsupportedFeature: naming the first field it cannot honour, and this runtime.
        """
        if isinstance(request, GenerationRequest):
            request = request.to_model(self.name)
        for name in request.used():
            if not self.capabilities.honours(name):
                reason = _REASONS.get(name, "it has no such setting")
                if name == "tool_choice":
                    reason += f" (got {request.tool_choice!r})"
                raise UnsupportedFeature(name, self.name, reason)
        return request

    async def generate(self, request: ModelRequest | GenerationRequest) -> Generation:
        """One whole generation.

        Raises:
            UnsupportedFeature: the request uses a field this runtime cannot honour.
        """
        return await self.handle_generate(self.check(request))

    def stream(self, request: ModelRequest | GenerationRequest) -> AsyncIterator[StreamChunk]:
        """The same generation as chunks; joined, they equal `generate`'s answer.

        Raises:
            UnsupportedFeature: at once, before any chunk, as `generate`.
        """
        return self.handle_stream(self.check(request))

    async def aclose(self) -> None:  # noqa: B027  # nothing to release unless overridden
        """Release connections, models and threads. Idempotent."""

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
