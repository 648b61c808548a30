"""Any server that speaks OpenAI chat completions: OpenAI itself, vLLM, Ollama, llama.cpp's
server, LM Studio, and the OpenAI-compatible endpoint of Workers AI.

```python
runtime = OpenAICompatible("http://127.0.0.1:8080/v1", model="qwen2.5-7b-instruct")
```

Sampling fields map one to one (`max_tokens`, `temperature`, `top_p`, `seed`,
`frequency_penalty`, `presence_penalty`). `top_k` and `repetition_penalty`, which OpenAI lacks,
are sent under those names only when set: vLLM and llama.cpp's server read them, OpenAI rejects
them with a 400 that names the field. `extra_body` adds or overrides any field of every request.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

import httpx

from agentkit.chat_formats import parse_tool_calls
from agentkit.errors import ConfigurationError, ModelHTTPError
from agentkit.model_api import Generation, GenerationRequest, StreamChunk, ToolCall, Usage
from agentkit.runtimes._http import (
    HTTPClient,
    RetryPolicy,
    Sleep,
    decode_event,
    error_from_response,
)
from agentkit.runtimes.base import Capabilities, check_supported

__all__ = ["OPENAI_URL", "OpenAICompatible"]

OPENAI_URL = "https://api.openai.com/v1"

_FINISH = {
    "stop": "stop",
    "eos": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
_SAMPLING = ("max_tokens", "temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")
_EXTRA_SAMPLING = ("top_k", "repetition_penalty")


def stable_call_id(*parts: str) -> str:
    """A call id derived from what the call came from: the same exchange, the same id, so a
    recorded conversation replays with the ids it was recorded with."""
    return "call_" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def with_stable_ids(calls: Any, seed: str) -> list[Any]:
    """Wire calls, each given an id made from `seed` and the call when it came without one."""
    out: list[Any] = []
    for n, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, Mapping) and not call.get("id"):
            text = json.dumps(call, sort_keys=True, default=str)
            call = {**call, "id": stable_call_id(seed, str(n), text)}
        out.append(call)
    return out


def salvage_tool_calls(
    text: str, tool_names: Collection[str], seed: str = ""
) -> tuple[str, list[ToolCall]]:
    """Tool calls a model wrote into its text instead of the `tool_calls` field.

    Only calls that all name offered tools count: an answer that merely shows some JSON stays
    an answer. Returns the text without the calls, and the calls (none: the text unchanged),
    with ids made from `seed`, the text and their position.
    """
    if not tool_names or not text.strip():
        return text, []
    rest, calls = parse_tool_calls(text)
    if not calls or any(call.name not in tool_names for call in calls):
        return text, []
    ids = [stable_call_id(seed, text, str(n)) for n in range(len(calls))]
    return rest.strip(), [c.model_copy(update={"id": i}) for c, i in zip(calls, ids, strict=True)]


class LeakGuard:
    """Holds back streamed text that starts like a tool call, so a call written into the text
    is not shown to the caller as an answer before it can be salvaged."""

    _OPENERS = ("{", "[", "<", "`")

    def __init__(self, tool_names: Collection[str]) -> None:
        self._names = tool_names
        self.seed = ""
        """Mixed into the ids of salvaged calls (e.g. the response id)."""
        self._buffer = ""
        self._holding = bool(tool_names)  # undecided until the first visible character
        self._decided = not tool_names

    def text(self, delta: str) -> str:
        """What of `delta` may be shown now."""
        if self._decided and not self._holding:
            return delta
        self._buffer += delta
        if not self._decided:
            start = self._buffer.lstrip()
            if not start:
                return ""
            self._decided = True
            self._holding = start.startswith(self._OPENERS)
            if not self._holding:
                out, self._buffer = self._buffer, ""
                return out
        return ""

    def finish(self) -> tuple[str, list[ToolCall]]:
        """The text still held, and the calls salvaged from it."""
        held, self._buffer = self._buffer, ""
        if not held:
            return "", []
        return salvage_tool_calls(held, self._names, self.seed)


def _tool_names(request: GenerationRequest) -> set[str]:
    return {t.name for t in request.tools or []}


def chat_body(request: GenerationRequest, model: str) -> dict[str, Any]:
    """The chat-completions body for a request (the prompt form becomes one user message)."""
    if request.messages is None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": request.prompt or ""}]
    else:
        messages = [m.to_wire("function") for m in request.messages]
    body: dict[str, Any] = {"model": model, "messages": messages}
    for name in (*_SAMPLING, *_EXTRA_SAMPLING):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.tools:
        body["tools"] = [t.to_wire("function") for t in request.tools]
        choice = request.tool_choice
        body["tool_choice"] = (
            choice
            if choice in ("auto", "required", "none")
            else {"type": "function", "function": {"name": choice}}
        )
    if request.response_format is not None:
        body["response_format"] = _response_format(request.response_format)
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _response_format(value: dict[str, Any]) -> dict[str, Any]:
    # Workers AI puts the bare schema under json_schema; OpenAI wants {name, schema}.
    schema = value.get("json_schema")
    if value.get("type") == "json_schema" and isinstance(schema, dict) and "schema" not in schema:
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    return value


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return str(content)


def usage_from_wire(data: Any) -> Usage | None:
    """OpenAI usage, with cached prompt tokens where the server reports them."""
    if not isinstance(data, Mapping):
        return None
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    prompt = int(data.get("prompt_tokens") or 0)
    completion = int(data.get("completion_tokens") or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(data.get("total_tokens") or prompt + completion),
        cached_prompt_tokens=cached if isinstance(cached, int) else None,
    )


def _choice(data: Any) -> Mapping[str, Any] | None:
    if not isinstance(data, Mapping):
        return None
    if "error" in data and not data.get("choices"):
        raise error_from_response(200, data)
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        return choices[0]
    return None


def generation_from_completion(data: Any, tool_names: set[str]) -> Generation:
    """A `chat.completion` object as a Generation; calls leaked into the text are salvaged."""
    choice = _choice(data)
    if choice is None:
        raise ModelHTTPError(f"the answer has no choices: {str(data)[:300]}", status=200)
    message = choice.get("message") or {}
    text = _text(message.get("content"))
    seed = str(data.get("id", "")) + text
    calls = [ToolCall.from_wire(c) for c in with_stable_ids(message.get("tool_calls"), seed)]
    if not calls:
        text, calls = salvage_tool_calls(text, tool_names, seed)
    finish = _FINISH.get(str(choice.get("finish_reason")))
    if calls:
        finish = "tool_calls"
    return Generation.model_validate(
        {
            "response": text,
            "tool_calls": calls,
            "usage": usage_from_wire(data.get("usage")) or Usage(),
            "finish_reason": finish,
        }
    )


class ChatStreamAssembler:
    """Turns `chat.completion.chunk` objects into StreamChunks.

    Text is passed on as it comes; tool-call fragments are joined by their `index` (arguments
    arrive as string pieces) and handed over whole, with usage, in the last chunk.
    """

    def __init__(self, tool_names: set[str]) -> None:
        self._calls: dict[int, dict[str, Any]] = {}
        self._last_index = -1
        self._usage: Usage | None = None
        self._finish: str | None = None
        self._guard = LeakGuard(tool_names)

    def feed(self, data: Any) -> StreamChunk | None:
        """The text chunk in `data`, if any; everything else is kept for `finish`."""
        if isinstance(data, Mapping):
            if data.get("usage"):
                self._usage = usage_from_wire(data["usage"])
            self._guard.seed = self._guard.seed or str(data.get("id", ""))
        choice = _choice(data)
        if choice is None:
            return None
        if choice.get("finish_reason"):
            self._finish = _FINISH.get(str(choice["finish_reason"]))
        delta = choice.get("delta") or {}
        for fragment in delta.get("tool_calls") or []:
            self._fragment(fragment)
        text = self._guard.text(_text(delta.get("content")))
        return StreamChunk(response=text) if text else None

    def _fragment(self, fragment: Mapping[str, Any]) -> None:
        index = fragment.get("index")
        known = {c["id"] for c in self._calls.values()}
        new = bool(fragment.get("id")) and fragment.get("id") not in known
        if not isinstance(index, int) or (new and self._calls.get(index, {}).get("id")):
            # Some servers send each call whole, with no index or all with the same one:
            # a call id not seen before starts a new call.
            index = self._last_index + 1 if new or self._last_index < 0 else self._last_index
        self._last_index = index
        call = self._calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
        function = fragment.get("function") or {}
        call["id"] = call["id"] or fragment.get("id")
        call["name"] = call["name"] or function.get("name") or ""
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):  # a whole object, from servers that do not stream it
            call["arguments"] = dict(arguments)
        elif arguments:
            call["arguments"] += arguments

    def finish(self) -> StreamChunk:
        """The last chunk: held-back text, the assembled tool calls, usage and finish reason."""
        text, salvaged = self._guard.finish()
        wire = with_stable_ids([self._calls[i] for i in sorted(self._calls)], self._guard.seed)
        calls = [ToolCall.from_wire(c) for c in wire] or salvaged
        finish = "tool_calls" if calls else self._finish
        return StreamChunk.model_validate(
            {"response": text, "tool_calls": calls, "usage": self._usage, "finish_reason": finish}
        )


class OpenAICompatible:
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
    capabilities = Capabilities(tool_choice=True)

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

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        check_supported(self, request)
        return {**chat_body(request, self.model), **self.extra_body}

    @property
    def _url(self) -> str:
        return f"{self.base_url}/chat/completions"

    async def generate(self, request: GenerationRequest) -> Generation:
        """One chat completion.

        Raises:
            TransportError: the server could not be reached or answered with an error.
        """
        body = self._body(request)
        body.pop("stream", None)
        body.pop("stream_options", None)
        data = await self._http.post_json(self._url, body)
        return generation_from_completion(data, _tool_names(request))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """The completion as chunks; tool calls come whole in the last one.

        Raises:
            StreamInterrupted: the stream ended before `[DONE]`.
            TransportError: as `generate`.
        """
        body = self._body(request.model_copy(update={"stream": True}))
        assembler = ChatStreamAssembler(_tool_names(request))
        async for event in self._http.stream_sse(self._url, body):
            chunk = assembler.feed(decode_event(event.data))
            if chunk is not None:
                yield chunk
        yield assembler.finish()

    async def aclose(self) -> None:
        """Close the connection pool (unless the client was passed in)."""
        await self._http.aclose()
