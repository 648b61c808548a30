"""OpenAI chat completions, both ways: requests, completions, stream chunks and `tool_choice`.

`agentkit.runtimes.openai` speaks it as a client; `agentkit serve` answers it at
`/v1/chat/completions`. Sampling fields map one to one (`max_tokens`, `temperature`, `top_p`,
`seed`, `frequency_penalty`, `presence_penalty`); `top_k` and `repetition_penalty`, which OpenAI
lacks, are sent under those names only when set (vLLM and llama.cpp's server read them). `lora`
is an agentkit extension `agentkit serve` reads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentkit.errors import FieldError, ModelHTTPError, RequestValidationError
from agentkit.model_api import (
    SAMPLING_FIELDS,
    FinishReason,
    Generation,
    ModelRequest,
    StreamChunk,
    ToolCall,
    Usage,
)
from agentkit.wire._ids import with_stable_ids
from agentkit.wire.workers_ai import GenerationRequest

__all__ = [
    "ChatRequest",
    "ChunkAssembler",
    "ChunkEncoder",
    "decode_completion",
    "decode_request",
    "decode_usage",
    "encode_completion",
    "encode_request",
    "encode_usage",
    "error_in",
]

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
_CHOICES = ("auto", "required", "none")


# -- requests ---------------------------------------------------------------------------------


def _encode_choice(choice: str) -> str | dict[str, Any]:
    if choice in _CHOICES:
        return choice
    return {"type": "function", "function": {"name": choice}}


def _encode_format(value: dict[str, Any]) -> dict[str, Any]:
    # Inside agentkit the bare schema sits under json_schema (as Workers AI has it); OpenAI
    # wants {name, schema}.
    schema = value.get("json_schema")
    if value.get("type") == "json_schema" and isinstance(schema, dict) and "schema" not in schema:
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    return value


def _decode_format(value: Any) -> Any:
    schema = value.get("json_schema") if isinstance(value, Mapping) else None
    if isinstance(schema, Mapping) and isinstance(schema.get("schema"), Mapping):
        return {**value, "json_schema": dict(schema["schema"])}
    return value


def encode_request(request: ModelRequest, model: str, *, stream: bool = False) -> dict[str, Any]:
    """The chat-completions body for a request (a raw prompt has no place on this wire:
    runtimes refuse it before encoding)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [m.to_wire("function") for m in request.messages],
    }
    body.update(request.sampling())
    if request.tools:
        body["tools"] = [t.to_wire("function") for t in request.tools]
        body["tool_choice"] = _encode_choice(request.tool_choice)
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.response_format is not None:
        body["response_format"] = _encode_format(request.response_format)
    if request.lora is not None:
        body["lora"] = request.lora
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


@dataclass(frozen=True)
class ChatRequest:
    """A decoded chat-completions body."""

    request: ModelRequest
    model: str | None
    stream: bool = False
    include_usage: bool = False


# Fields an OpenAI client may send under the contract's own name.
_SAME = (
    *SAMPLING_FIELDS,
    "messages",
    "tools",
    "response_format",
    "lora",
    "parallel_tool_calls",
    "stream",
)


def _decode_choice(choice: Any, errors: list[FieldError]) -> str | None:
    if choice is None or isinstance(choice, str):
        return choice
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str) and name:
            return name
    errors.append(
        FieldError(
            "tool_choice",
            'must be "auto", "required", "none" or {"type": "function", "function": '
            f'{{"name": ...}}}} (got {choice!r})',
        )
    )
    return None


def decode_request(body: Mapping[str, Any]) -> ChatRequest:
    """The request in a chat-completions body.

    Fields the contract cannot honour (`n` > 1, `stop`, `logprobs`) are refused by name; fields
    that change nothing here (`user`, `store`, `metadata`, ...) are ignored. Types are strict.

    Raises:
        RequestValidationError: naming each field, its bound and the value.
    """
    errors: list[FieldError] = []
    if body.get("n") not in (None, 1):
        errors.append(FieldError("n", f"only 1 choice is generated (got {body['n']!r})"))
    if body.get("stop"):
        errors.append(
            FieldError("stop", f"stop sequences are not supported (got {body['stop']!r})")
        )
    if body.get("logprobs"):
        errors.append(FieldError("logprobs", "log probabilities are not available (got true)"))
    fields: dict[str, Any] = {k: body[k] for k in _SAME if body.get(k) is not None}
    if isinstance(fields.get("messages"), list):
        # OpenAI's newer name for the system role.
        fields["messages"] = [
            {**m, "role": "system"}
            if isinstance(m, Mapping) and m.get("role") == "developer"
            else m
            for m in fields["messages"]
        ]
    tokens_field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if body.get(tokens_field) is not None:
        fields["max_tokens"] = body[tokens_field]
    if "response_format" in fields:
        fields["response_format"] = _decode_format(fields["response_format"])
    choice = _decode_choice(body.get("tool_choice"), errors)
    if choice is not None:
        fields["tool_choice"] = choice
    try:
        wire = GenerationRequest.build(fields)
    except RequestValidationError as exc:
        renamed = [
            FieldError(tokens_field, e.message) if e.path == "max_tokens" else e for e in exc.errors
        ]
        raise RequestValidationError(errors + renamed) from None
    if errors:
        raise RequestValidationError(errors)
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    model = body.get("model")
    return ChatRequest(
        wire.to_model(), model if isinstance(model, str) else None, wire.stream, include_usage
    )


# -- answers ----------------------------------------------------------------------------------


def decode_usage(data: Any) -> Usage | None:
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


def encode_usage(usage: Usage) -> dict[str, Any]:
    """OpenAI usage; cached prompt tokens under `prompt_tokens_details` when known."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_prompt_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_prompt_tokens}
    return out


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return str(content)


def error_in(data: Any) -> bool:
    """True when a 200 answer (or a stream event) carries an `error` object instead of choices."""
    return isinstance(data, Mapping) and "error" in data and not data.get("choices")


def _choice(data: Any) -> Mapping[str, Any] | None:
    choices = data.get("choices") if isinstance(data, Mapping) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        return choices[0]
    return None


def _finish(generation: Generation | StreamChunk) -> str:
    return "tool_calls" if generation.tool_calls else generation.finish_reason or "stop"


def decode_completion(data: Any) -> Generation:
    """A `chat.completion` object as a Generation (calls without an id get a stable one).

    Raises:
        ModelHTTPError: the object has no choices.
    """
    choice = _choice(data)
    if choice is None:
        raise ModelHTTPError(f"the answer has no choices: {str(data)[:300]}", status=200)
    message = choice.get("message") or {}
    text = _text(message.get("content"))
    seed = str(data.get("id", "")) + text
    calls = [ToolCall.from_wire(c) for c in with_stable_ids(message.get("tool_calls"), seed)]
    finish = "tool_calls" if calls else _FINISH.get(str(choice.get("finish_reason")))
    return Generation.model_validate(
        {
            "response": text,
            "tool_calls": calls,
            "usage": decode_usage(data.get("usage")) or Usage(),
            "finish_reason": finish,
        }
    )


def encode_completion(
    generation: Generation, *, model: str, request_id: str, created: int | None = None
) -> dict[str, Any]:
    """A whole generation as a `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": generation.response}
    if generation.tool_calls:
        message["content"] = generation.response or None
        message["tool_calls"] = [c.to_wire("function") for c in generation.tool_calls]
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _finish(generation), "logprobs": None}
        ],
        "usage": encode_usage(generation.usage),
    }


# -- streams ----------------------------------------------------------------------------------


class ChunkEncoder:
    """StreamChunks as `chat.completion.chunk` objects: a role chunk first, text as it comes,
    each tool call whole with its index, then the finish reason and (if asked) usage."""

    def __init__(self, *, model: str, request_id: str, created: int | None = None) -> None:
        self._head = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()) if created is None else created,
            "model": model,
        }
        self._started = False
        self._calls = 0

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {**self._head, "choices": [choice]}

    def _start(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def encode(self, piece: StreamChunk) -> list[dict[str, Any]]:
        """The chunk objects for one piece of the stream."""
        out = self._start()
        if piece.response:
            out.append(self._chunk({"content": piece.response}))
        for call in piece.tool_calls:
            out.append(self._chunk({"tool_calls": [{"index": self._calls, **call.to_wire()}]}))
            self._calls += 1
        return out

    def finish(self, generation: Generation, *, include_usage: bool) -> list[dict[str, Any]]:
        """The closing chunk objects for the whole stream's generation."""
        out = [*self._start(), self._chunk({}, _finish(generation))]
        if include_usage:
            out.append({**self._head, "choices": [], "usage": encode_usage(generation.usage)})
        return out


class ChunkAssembler:
    """`chat.completion.chunk` objects back into a generation.

    Text is passed on as it comes; tool-call fragments are joined by their `index` (arguments
    arrive as string pieces) and handed over whole, with usage, by `finish`.
    """

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}
        self._last_index = -1
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None
        self.id = ""
        """The stream's id (the first one sent), from which missing call ids are made."""

    def feed(self, data: Any) -> str:
        """The text in one chunk object; everything else is kept for `finish`."""
        if isinstance(data, Mapping):
            if data.get("usage"):
                self._usage = decode_usage(data["usage"])
            self.id = self.id or str(data.get("id", ""))
        choice = _choice(data)
        if choice is None:
            return ""
        if choice.get("finish_reason"):
            self._finish = _FINISH.get(str(choice["finish_reason"]))
        delta = choice.get("delta") or {}
        for fragment in delta.get("tool_calls") or []:
            self._fragment(fragment)
        return _text(delta.get("content"))

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
        """The last chunk: the assembled tool calls, usage and finish reason."""
        wire = with_stable_ids([self._calls[i] for i in sorted(self._calls)], self.id)
        calls = [ToolCall.from_wire(c) for c in wire]
        return StreamChunk(
            tool_calls=calls,
            usage=self._usage,
            finish_reason="tool_calls" if calls else self._finish,
        )
