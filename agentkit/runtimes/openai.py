"""Any server that speaks OpenAI chat completions: OpenAI itself, vLLM, Ollama, llama.cpp's
server, LM Studio, and the OpenAI-compatible endpoint of Workers AI.

```python
runtime = OpenAICompatible("http://127.0.0.1:8080/v1", model="qwen2.5-7b-instruct")
```

Sampling fields map one to one (`max_tokens`, `temperature`, `top_p`, `seed`,
`frequency_penalty`, `presence_penalty`). `top_k` and `repetition_penalty`, which OpenAI lacks,
are sent under those names only when set: vLLM and llama.cpp's server read them, OpenAI rejects
them with a 400 that names the field. `extra_body` adds or overrides any field of every request.

An answer schema (`response_format` of type `json_schema`) is sent as
`{name, schema, strict: true}` when strict mode can hold it without changing its meaning (the
same test as strict tools: every property required, no keyword strict mode lacks), objects then
closed (`additionalProperties: false`); otherwise with `strict: false`.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from agentkit.errors import ConfigurationError
from agentkit.model_api import Generation, ModelRequest, StreamChunk
from agentkit.runtimes._http import (
    HTTPClient,
    RetryPolicy,
    Sleep,
    decode_event,
    error_from_response,
)
from agentkit.runtimes._salvage import LeakGuard, salvage_tool_calls
from agentkit.runtimes.base import Capabilities, Runtime
from agentkit.tools.formats import strict_problems, to_strict
from agentkit.wire import openai as wire

__all__ = ["OPENAI_URL", "OpenAICompatible", "openai_response_format"]

OPENAI_URL = "https://api.openai.com/v1"
_FORMAT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def openai_response_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """agentkit's `response_format` as OpenAI takes it: a bare schema becomes
    `{name, schema, strict}`, strict when the schema allows it (then in strict form)."""
    schema = response_format.get("json_schema")
    if response_format.get("type") != "json_schema" or not isinstance(schema, Mapping):
        return dict(response_format)
    if "schema" in schema:  # already in OpenAI's shape
        return dict(response_format)
    title = schema.get("title")
    name = title if isinstance(title, str) and _FORMAT_NAME.match(title) else "response"
    strict = not strict_problems(schema)
    body = to_strict(schema) if strict else dict(schema)
    return {"type": "json_schema", "json_schema": {"name": name, "schema": body, "strict": strict}}


def _tool_names(request: ModelRequest) -> set[str]:
    return {t.name for t in request.tools}


def generation_from_completion(data: Any, tool_names: set[str]) -> Generation:
    """A `chat.completion` object as a Generation; calls leaked into the text are salvaged.

    Raises:
        TransportError: the object is an error answer, or has no choices.
    """
    if wire.error_in(data):
        raise error_from_response(200, data)
    generation = wire.decode_completion(data)
    if not generation.tool_calls:
        seed = str(data.get("id", "")) + generation.response
        text, calls = salvage_tool_calls(generation.response, tool_names, seed)
        if calls:
            update = {"response": text, "tool_calls": calls, "finish_reason": "tool_calls"}
            generation = generation.model_copy(update=update)
    return generation


class ChatStreamAssembler:
    """`chat.completion.chunk` objects as StreamChunks: text as it comes (held back while it
    may be a call written into the text), the calls whole, with usage, in the last chunk."""

    def __init__(self, tool_names: set[str]) -> None:
        self._wire = wire.ChunkAssembler()
        self._guard = LeakGuard(tool_names)

    def feed(self, data: Any) -> StreamChunk | None:
        """The text chunk in `data`, if any; everything else is kept for `finish`.

        Raises:
            TransportError: the event is an error answer.
        """
        if wire.error_in(data):
            raise error_from_response(200, data)
        text = self._wire.feed(data)
        self._guard.seed = self._guard.seed or self._wire.id
        shown = self._guard.text(text)
        return StreamChunk(response=shown) if shown else None

    def finish(self) -> StreamChunk:
        """The last chunk: held-back text, the tool calls, usage and finish reason."""
        last = self._wire.finish()
        text, salvaged = self._guard.finish()
        if last.tool_calls or not salvaged:
            return last.model_copy(update={"response": text})
        update = {"response": text, "tool_calls": salvaged, "finish_reason": "tool_calls"}
        return last.model_copy(update=update)


class OpenAICompatible(Runtime):
    """A runtime for servers that speak OpenAI chat completions.

    Args:
        base_url: the API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
        api_key: sent as a bearer token; None for local servers that need none.
        model: the model name the server knows.
        client: an `httpx.AsyncClient` to use (a `MockTransport` in tests); its owner closes it.
        timeout: seconds or an `httpx.Timeout` (default: 10 s to connect, 300 s to read); it
            also bounds each attempt as a whole (see `agentkit.runtimes._http`).
        max_retries: retries of a failed request (connection errors, timeouts, 408, 409, 429,
            5xx); ignored when `retry` is given.
        retry: the whole retry policy.
        extra_body: fields added to (or overriding) every request body.
        headers: extra headers sent with every request.
        sleep: how to wait between retries (tests pass one that records the delays).
        http: a configured `HTTPClient` to share (it replaces the transport arguments).
    """

    name = "openai"
    capabilities = Capabilities(
        tool_choice=True, parallel_tool_calls=True, response_format=True, schema_dialect="inline"
    )

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        model: str,
        client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        sleep: Sleep | None = None,
        http: HTTPClient | None = None,
    ) -> None:
        if not model:
            raise ConfigurationError("openai runtime: model is empty; pass model=")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.extra_body = dict(extra_body or {})
        sent = dict(headers or {})
        if api_key:
            sent["Authorization"] = f"Bearer {api_key}"
        self._http = http or HTTPClient(
            headers=sent,
            client=client,
            timeout=timeout,
            retry=retry or RetryPolicy(max_retries=max_retries),
            secret=api_key,
            sleep=sleep,
        )

    @classmethod
    def from_env(cls, **options: Any) -> OpenAICompatible:
        """Configured from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `OPENAI_MODEL`, with
        `options` taking precedence. Without a base URL, OpenAI's own is used.

        Raises:
            ConfigurationError: naming the variables that are missing.
        """
        base_url = options.pop("base_url", None) or os.environ.get("OPENAI_BASE_URL")
        api_key = options.pop("api_key", None) or os.environ.get("OPENAI_API_KEY")
        model = options.pop("model", None) or os.environ.get("OPENAI_MODEL")
        missing = []
        if not base_url and not api_key:
            missing.append("OPENAI_BASE_URL (a local server) or OPENAI_API_KEY (OpenAI)")
        if not model:
            missing.append("OPENAI_MODEL (or pass model=, --model)")
        if missing:
            raise ConfigurationError("openai runtime: set " + " and ".join(missing))
        assert model is not None
        return cls(base_url or OPENAI_URL, api_key, model=model, **options)

    def __repr__(self) -> str:
        return f"OpenAICompatible(base_url={self.base_url!r}, model={self.model!r})"

    def _body(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        if request.response_format is not None:
            fmt = openai_response_format(request.response_format)
            request = request.model_copy(update={"response_format": fmt})
        return {**wire.encode_request(request, self.model, stream=stream), **self.extra_body}

    @property
    def _url(self) -> str:
        return f"{self.base_url}/chat/completions"

    async def handle_generate(self, request: ModelRequest) -> Generation:
        """One chat completion.

        Raises:
            TransportError: the server could not be reached or answered with an error.
        """
        data = await self._http.post_json(self._url, self._body(request))
        return generation_from_completion(data, _tool_names(request))

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """The completion as chunks; tool calls come whole in the last one.

        Raises:
            StreamInterrupted: the stream ended before `[DONE]`.
            TransportError: as `generate`.
        """
        body = self._body(request, stream=True)
        assembler = ChatStreamAssembler(_tool_names(request))
        async for event in self._http.stream_sse(self._url, body):
            chunk = assembler.feed(decode_event(event.data))
            if chunk is not None:
                yield chunk
        yield assembler.finish()

    async def aclose(self) -> None:
        """Close the connection pool (unless the client was passed in)."""
        await self._http.aclose()
