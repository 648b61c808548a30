"""Cloudflare Workers AI over its REST API (or its OpenAI-compatible endpoint).

```python
runtime = WorkersAI(model="@cf/meta/llama-3.1-8b-instruct")  # CLOUDFLARE_ACCOUNT_ID/_API_TOKEN
```

The base URL is `https://api.cloudflare.com/client/v4` unless `base_url` or `CLOUDFLARE_BASE_URL`
says otherwise: a proxy, `agentkit serve` (`http://127.0.0.1:8787/client/v4`), or an AI Gateway
(`https://gateway.ai.cloudflare.com/v1/{account}/{gateway}/workers-ai`, whose URL already holds
the account).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import httpx

from agentkit.errors import ConfigurationError, ModelHTTPError
from agentkit.model_api import (
    DEFAULT_MODEL,
    FinishReason,
    Generation,
    ModelRequest,
    StreamChunk,
    ToolShape,
    Usage,
)
from agentkit.runtimes._http import (
    HTTPClient,
    RetryPolicy,
    Sleep,
    decode_event,
    error_from_response,
)
from agentkit.runtimes._salvage import LeakGuard, salvage_tool_calls
from agentkit.runtimes.base import Capabilities, Runtime
from agentkit.runtimes.openai import ChatStreamAssembler, OpenAICompatible
from agentkit.wire import workers_ai as wire

__all__ = ["CLOUDFLARE_URL", "WorkersAI"]

CLOUDFLARE_URL = "https://api.cloudflare.com/client/v4"

Endpoint = Literal["run", "openai"]
"""`run`: `/accounts/{id}/ai/run/{model}` (the contract); `openai`: `/ai/v1/chat/completions`."""


def _finish(calls: Sequence[Any], usage: Usage | None, request: ModelRequest) -> FinishReason:
    if calls:
        return "tool_calls"
    if usage is not None and usage.completion_tokens >= request.max_tokens:
        return "length"
    return "stop"


class WorkersAI(Runtime):
    """A runtime on Cloudflare Workers AI.

    Args:
        account_id: the Cloudflare account; default `CLOUDFLARE_ACCOUNT_ID`.
        api_token: an API token with Workers AI access; default `CLOUDFLARE_API_TOKEN`. It is
            kept out of every repr, message and log line.
        model: the model, e.g. `@cf/meta/llama-3.1-8b-instruct`.
        base_url: the API root; default `CLOUDFLARE_BASE_URL`, else Cloudflare's.
        endpoint: `run` (the Workers AI contract) or `openai` (its chat-completions endpoint).
        tool_shape: how tools and past calls are sent on the `run` endpoint: `legacy`
            (`{name, description, parameters}`, as the model's schema documents) or `function`.
        client: an `httpx.AsyncClient` to use (a `MockTransport` in tests); its owner closes it.
        timeout: seconds or an `httpx.Timeout` (default: 10 s to connect, 300 s to read); it
            also bounds each attempt as a whole (see `agentkit.runtimes._http`).
        max_retries: retries of a failed request; ignored when `retry` is given.
        retry: the whole retry policy.
        sleep: how to wait between retries (tests pass one that records the delays).

    Raises:
        ConfigurationError: naming each setting that is missing.
    """

    name = "workers-ai"
    capabilities = Capabilities(lora=True, raw=True, response_format=True)

    def __init__(
        self,
        account_id: str | None = None,
        api_token: str | None = None,
        model: str | None = None,
        *,
        base_url: str | None = None,
        endpoint: Endpoint = "run",
        tool_shape: ToolShape = "legacy",
        client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        base = (base_url or os.environ.get("CLOUDFLARE_BASE_URL") or CLOUDFLARE_URL).rstrip("/")
        gateway = base.endswith("/workers-ai")
        account_id = account_id or os.environ.get("CLOUDFLARE_ACCOUNT_ID")
        api_token = api_token or os.environ.get("CLOUDFLARE_API_TOKEN")
        missing = [
            f"{variable} (or pass {argument}=)"
            for variable, argument, value in (
                ("CLOUDFLARE_ACCOUNT_ID", "account_id", account_id or gateway),
                ("CLOUDFLARE_API_TOKEN", "api_token", api_token),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(f"workers-ai runtime: set {' and '.join(missing)}")
        if endpoint not in ("run", "openai"):
            raise ConfigurationError(f"endpoint: must be 'run' or 'openai' (got {endpoint!r})")
        assert api_token is not None
        self.account_id = account_id
        self.model = model or DEFAULT_MODEL
        self.base_url = base
        self.endpoint = endpoint
        self.tool_shape: ToolShape = tool_shape
        root = base if gateway else f"{base}/accounts/{account_id}/ai"
        self._run_url = f"{base}/{self.model}" if gateway else f"{root}/run/{self.model}"
        self._openai: OpenAICompatible | None = None
        self._http = HTTPClient(
            headers={"Authorization": f"Bearer {api_token}"},
            client=client,
            timeout=timeout,
            retry=retry or RetryPolicy(max_retries=max_retries),
            secret=api_token,
            sleep=sleep,
        )
        if endpoint == "openai":
            self._openai = OpenAICompatible(
                f"{root}/v1",
                api_token,
                model=self.model,
                http=self._http,
            )
            self.capabilities = OpenAICompatible.capabilities

    @classmethod
    def from_env(cls, **options: Any) -> WorkersAI:
        """Configured from `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_API_TOKEN` and
        `CLOUDFLARE_BASE_URL`, with `options` (the constructor's arguments) taking precedence.

        Raises:
            ConfigurationError: naming each variable that is missing.
        """
        return cls(**options)

    def __repr__(self) -> str:
        return (
            f"WorkersAI(account_id={self.account_id!r}, model={self.model!r}, "
            f"base_url={self.base_url!r}, endpoint={self.endpoint!r})"
        )

    async def handle_generate(self, request: ModelRequest) -> Generation:
        """One generation.

        Raises:
            TransportError: the service could not be reached, or said no (an envelope with
                `success: false` counts, even with HTTP 200).
        """
        if self._openai is not None:
            return await self._openai.handle_generate(request)
        body = wire.encode_request(request, tool_shape=self.tool_shape)
        data = await self._http.post_json(self._run_url, body)
        result = data.get("result") if isinstance(data, Mapping) else None
        if not isinstance(result, Mapping):
            raise ModelHTTPError(f"the answer has no result: {str(data)[:300]}", status=200)
        seed = json.dumps(body, sort_keys=True)
        generation = wire.decode_result(result, seed)
        if not generation.tool_calls and request.tools:
            names = {t.name for t in request.tools}
            text, calls = salvage_tool_calls(generation.response, names, seed)
            generation = generation.model_copy(update={"response": text, "tool_calls": calls})
        generation.finish_reason = _finish(generation.tool_calls, generation.usage, request)
        return generation

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """The generation as chunks, from the service's server-sent events.

        Raises:
            StreamInterrupted: the stream ended before `[DONE]`.
            TransportError: as `generate`; not retried once a chunk was yielded.
        """
        if self._openai is not None:
            async for chunk in self._openai.handle_stream(request):
                yield chunk
            return
        body = wire.encode_request(request, tool_shape=self.tool_shape, stream=True)
        names = {t.name for t in request.tools}
        seed = json.dumps(body, sort_keys=True)
        guard = LeakGuard(names)
        guard.seed = seed
        assembler: ChatStreamAssembler | None = None
        calls: list[Any] = []
        usage: Usage | None = None
        n = 0
        async for event in self._http.stream_sse(self._run_url, body):
            data = decode_event(event.data)
            n += 1
            if not isinstance(data, Mapping):
                continue
            if data.get("errors") or ("error" in data and "response" not in data):
                raise error_from_response(200, data)
            if "choices" in data:  # some models stream in the OpenAI chunk shape
                assembler = assembler or ChatStreamAssembler(names)
                piece = assembler.feed(data)
                if piece is not None:
                    yield piece
                continue
            chunk = wire.decode_chunk(data, f"{seed}\0{n}")
            chunk.response = guard.text(chunk.response)
            calls.extend(chunk.tool_calls)
            usage = chunk.usage or usage
            if chunk.response or chunk.tool_calls or chunk.usage:
                yield chunk
        if assembler is not None:
            yield assembler.finish()
            return
        held, salvaged = guard.finish()
        salvaged = [] if calls else salvaged
        yield StreamChunk(
            response=held,
            tool_calls=salvaged,
            finish_reason=_finish(calls or salvaged, usage, request),
        )

    async def aclose(self) -> None:
        """Close the connection pool (unless the client was passed in)."""
        await self._http.aclose()
