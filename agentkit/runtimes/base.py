"""The Runtime protocol: one request object in, one generation (or a stream of chunks) out.

New options become fields of `GenerationRequest`, never new parameters. A runtime states what it
can do in `capabilities`, so callers can adapt or refuse clearly before sending anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from agentkit.errors import UnsupportedFeature
from agentkit.model_api import Generation, GenerationRequest, StreamChunk

__all__ = ["Capabilities", "Runtime", "SchemaDialect", "check_supported"]

SchemaDialect = Literal["full", "inline", "strict"]
"""How tool parameter schemas are sent: as built (`$defs` and `$ref` kept), with references
inlined (Llama, Workers AI), or in OpenAI strict form."""


@dataclass(frozen=True)
class Capabilities:
    """What a runtime can do."""

    tools: bool = True
    """Takes tool definitions and answers with tool calls."""
    streaming: bool = True
    """`stream()` yields chunks as they are generated (not just one chunk at the end)."""
    lora: bool = False
    """Applies a named LoRA adapter (`request.lora`)."""
    grammar: bool = False
    """Holds tool calls to a grammar built from the tools' schemas, so they are always valid."""
    raw: bool = False
    """Takes a raw prompt with no chat template (`request.raw`)."""
    tool_choice: bool = False
    """Honours `request.tool_choice` values other than `auto`."""
    images: bool = False
    """Reads `request.image`."""
    schema_dialect: SchemaDialect = "inline"
    """The tool schema dialect the model is sent."""


@runtime_checkable
class Runtime(Protocol):
    """A model behind one request type. Implementations must be safe to call concurrently."""

    name: str
    """Short name used in messages: `local`, `workers-ai`, `openai`, `scripted`, ..."""
    capabilities: Capabilities

    async def generate(self, request: GenerationRequest) -> Generation:
        """One whole generation."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """The same generation as chunks; joined, they equal `generate`'s answer."""
        ...

    async def aclose(self) -> None:
        """Release connections, models and threads. Idempotent."""
        ...


def check_supported(runtime: Runtime, request: GenerationRequest) -> None:
    """Refuse, with the field named, a request the runtime cannot honour.

    Raises:
        UnsupportedFeature: naming the field and why.
    """
    caps = runtime.capabilities
    name = runtime.name
    if request.image is not None and not caps.images:
        raise UnsupportedFeature("image", name, "this model reads text only")
    if request.functions:
        raise UnsupportedFeature("functions", name, "agentkit does not execute code strings")
    if request.lora is not None and not caps.lora:
        raise UnsupportedFeature("lora", name, "this runtime cannot apply LoRA adapters")
    if request.raw and not caps.raw:
        raise UnsupportedFeature("raw", name, "this runtime always applies a chat template")
    if request.tools and not caps.tools:
        raise UnsupportedFeature("tools", name, "this runtime cannot call tools")
    if request.tool_choice != "auto" and request.tools and not caps.tool_choice:
        raise UnsupportedFeature(
            "tool_choice", name, f"only 'auto' is supported (got {request.tool_choice!r})"
        )
