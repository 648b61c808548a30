"""`Cached`: a runtime that answers a request it has seen before from a store, without a call
to the runtime it wraps.

```python
runtime = Cached(WorkersAI(), store="responses.db")   # or a CacheStore, or None: in memory
agent = Agent(runtime, temperature=0)
```

The key is the sha256 of the canonical request: its every field (messages, tools, tool
choice, response format, sampling fields, raw prompt, LoRA...) as sorted-key JSON, with the
wrapped runtime's name and model. Nothing else enters it, so an API token or any other header
never reaches a key or the store.

Only requests whose answer is repeatable are cached: greedy ones (`temperature` 0) and seeded
ones (`seed` set); `sampled=True` caches the rest too.

A stream and a whole generation share one entry. A stream is stored chunk by chunk once it has
ended well (one that fails, or that its reader leaves early, is not stored) and a later stream
replays the same chunks in order; a later `generate` gets them joined. A generation stored by
`generate` is replayed to a stream as one chunk.

A hit is marked: `Generation.cached` (and `StreamChunk.cached` on each replayed chunk) is True,
and its usage is zero tokens with `Usage.cache_hits == 1`, so a run's `usage.cache_hits` counts
its hits and they cost nothing (`RunResult.cost`); the tokens the model once spent are not
counted again. A traced run's `chat` span of a hit carries `agentkit.cache.hit = True`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

from agentkit.errors import UserError
from agentkit.model_api import Generation, ModelRequest, StreamChunk, Usage
from agentkit.runtimes.base import Runtime
from agentkit.runtimes.cache_stores import CacheStore, MemoryCacheStore, SQLiteCacheStore
from agentkit.runtimes.wrapper import RuntimeWrapper
from agentkit.usage import model_name

__all__ = ["Cached", "request_key"]

_VERSION = 1
"""Part of every key: a change to what is stored, or how, starts afresh."""


def request_key(request: ModelRequest, runtime: Runtime, namespace: str = "") -> str:
    """The cache key of `request` sent to `runtime`: a sha256 hex digest of the canonical
    request (every field, as sorted-key JSON) with the runtime's name and model.

    Args:
        request: the request, as the runtime would get it.
        runtime: the runtime answering it (its `name` and model name are part of the key).
        namespace: kept apart from every other namespace's keys.
    """
    fields = request.model_dump(mode="json")
    # Arguments that were not JSON are kept as text, which the dump leaves out.
    for message, dumped in zip(request.messages, fields["messages"], strict=True):
        for call, out in zip(message.tool_calls, dumped["tool_calls"], strict=True):
            if call.raw_arguments is not None:
                out["raw_arguments"] = call.raw_arguments
    canonical = {
        "version": _VERSION,
        "namespace": namespace,
        "runtime": runtime.name,
        "model": model_name(runtime),
        "request": fields,
    }
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _dump_chunk(chunk: StreamChunk | Generation) -> dict[str, Any]:
    out: dict[str, Any] = {"response": chunk.response}
    if chunk.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments}
            | ({"raw_arguments": c.raw_arguments} if c.raw_arguments is not None else {})
            for c in chunk.tool_calls
        ]
    if chunk.usage is not None:
        out["usage"] = chunk.usage.model_dump(exclude_none=True, exclude={"cache_hits"})
    if chunk.finish_reason is not None:
        out["finish_reason"] = chunk.finish_reason
    return out


def _encode(chunks: Sequence[StreamChunk | Generation]) -> bytes:
    body = {"chunks": [_dump_chunk(c) for c in chunks]}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _decode(value: bytes) -> list[StreamChunk] | None:
    """The stored chunks, marked as replayed and costing nothing; None when unreadable."""
    try:
        body = json.loads(value)
        chunks = [StreamChunk.model_validate(c) for c in body["chunks"]]
    except (ValueError, KeyError, TypeError):
        return None  # written by something else, or damaged: a miss, stored afresh
    if not chunks:
        return None
    # The usage goes on the chunk that carried it (else the last): zero tokens, one hit.
    carrier = max((n for n, c in enumerate(chunks) if c.usage is not None), default=len(chunks) - 1)
    for n, chunk in enumerate(chunks):
        chunk.cached = True
        chunk.usage = Usage(cache_hits=1) if n == carrier else None
    return chunks


class Cached(RuntimeWrapper):
    """A runtime around another that answers repeated requests from a `CacheStore`.

    Args:
        runtime: the runtime that answers misses.
        store: a `CacheStore`; a path (str or `os.PathLike`) for a `SQLiteCacheStore` there;
            or None for a `MemoryCacheStore`. A store made here is closed with this runtime;
            one passed in belongs to the caller.
        sampled: cache requests that sample (`temperature` above 0 with no `seed`) too; their
            answers would otherwise differ from call to call.
        namespace: keeps these entries apart from others in a shared store (a prompt or data
            version, say).
        owns: close `runtime` when this one is closed; by default the caller closes it, as
            it made it.

    Capabilities, profile, slots, name and model are the wrapped runtime's, so an Agent, a
    server or a price table see the model behind the cache. The key holds the runtime's name
    and model, not where it is served from: two servers of one model name share entries unless
    their `namespace`s differ.
    """

    def __init__(
        self,
        runtime: Runtime,
        store: CacheStore | str | os.PathLike[str] | None = None,
        *,
        sampled: bool = False,
        namespace: str = "",
        owns: bool = False,
    ) -> None:
        if not isinstance(runtime, Runtime):
            raise UserError(f"Cached: runtime must be a Runtime (got {type(runtime).__name__})")
        super().__init__(runtime)
        self._owns_store = not isinstance(store, CacheStore)
        if store is None:
            store = MemoryCacheStore()
        elif isinstance(store, str | os.PathLike):
            store = SQLiteCacheStore(os.fspath(store))
        elif not isinstance(store, CacheStore):
            raise UserError(
                f"Cached: store must be a CacheStore, a path or None (got {type(store).__name__})"
            )
        self.store: CacheStore = store
        """Where answers are kept."""
        self.sampled = sampled
        self.namespace = namespace
        self.owns = owns
        self.model = model_name(runtime)
        """The wrapped runtime's model, for usage by model and prices."""
        self._closed = False

    def __repr__(self) -> str:
        return f"Cached({self.runtime!r}, store={self.store!r})"

    def cacheable(self, request: ModelRequest) -> bool:
        """Whether `request` may be answered from the cache: it is greedy or seeded, or this
        runtime caches sampled requests too."""
        return self.sampled or request.temperature == 0 or request.seed is not None

    def key(self, request: ModelRequest) -> str:
        """The cache key of `request` (`request_key` with this runtime's wrapped runtime)."""
        return request_key(request, self.runtime, self.namespace)

    async def handle_generate(self, request: ModelRequest) -> Generation:
        key = self.key(request) if self.cacheable(request) else None
        if key is not None:
            replayed = await self._lookup(key)
            if replayed is not None:
                return StreamChunk.join(replayed)
        generation = await self.runtime.generate(request)
        if key is not None:
            await self.store.set(key, _encode([generation]))
        return generation

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        key = self.key(request) if self.cacheable(request) else None
        if key is not None:
            replayed = await self._lookup(key)
            if replayed is not None:
                for chunk in replayed:
                    yield chunk
                return
        chunks: list[StreamChunk] = []
        stream = self.runtime.stream(request)
        try:
            async for chunk in stream:
                chunks.append(chunk)
                yield chunk
        finally:
            # Closed at once, whether it ended, failed or was left: its connection goes back.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        # Only a stream read to its end gets here: one that failed or was left raised above.
        if key is not None:
            await self.store.set(key, _encode(chunks))

    async def _lookup(self, key: str) -> list[StreamChunk] | None:
        stored = await self.store.get(key)
        return None if stored is None else _decode(stored)

    async def __aenter__(self) -> Cached:
        return self

    async def aclose(self) -> None:
        """Close the store if this runtime made it, and the wrapped runtime if it `owns` it."""
        if self._closed:
            return
        self._closed = True
        if self._owns_store:
            await self.store.aclose()
        if self.owns:
            await self.runtime.aclose()
