"""The OpenAI-compatible endpoint's stream: a runtime's chunks as `chat.completion.chunk`
events. The translation itself is the OpenAI wire codec, `agentkit.wire.openai`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from agentkit.model_api import ModelRequest, StreamChunk
from agentkit.runtimes.base import Runtime
from agentkit.server.queue import as_generator
from agentkit.server.sse import DONE, data_frame
from agentkit.wire.openai import ChunkEncoder

__all__ = ["completion_frames"]


async def completion_frames(
    runtime: Runtime,
    request: ModelRequest,
    *,
    model: str,
    request_id: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """A streamed generation as `chat.completion.chunk` events, then `[DONE]`."""
    encoder = ChunkEncoder(model=model, request_id=request_id)
    seen: list[StreamChunk] = []
    async with aclosing(as_generator(runtime.stream(request))) as chunks:
        async for piece in chunks:
            seen.append(piece)
            for data in encoder.encode(piece):
                yield data_frame(data)
    for data in encoder.finish(StreamChunk.join(seen), include_usage=include_usage):
        yield data_frame(data)
    yield DONE
