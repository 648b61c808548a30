"""The OpenAI-compatible endpoint: chat completions in, `chat.completion(.chunk)` out.

Only the translation lives here; the HTTP side is in `app.py`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from agentkit.errors import FieldError, RequestValidationError
from agentkit.model_api import Generation, GenerationRequest, StreamChunk, ToolCall, Usage
from agentkit.runtimes.base import Runtime
from agentkit.server.queue import as_generator
from agentkit.server.sse import DONE, data_frame

__all__ = ["completion", "completion_frames", "to_generation_request"]

# Fields of the contract an OpenAI client may send under the same name.
_SAME = (
    "messages tools stream temperature top_p top_k seed repetition_penalty frequency_penalty "
    "presence_penalty response_format lora raw parallel_tool_calls"
).split()


def to_generation_request(body: Mapping[str, Any]) -> GenerationRequest:
    """The contract's request for an OpenAI chat-completions body.

    Fields the contract cannot honour (`n` > 1, `stop`, `logprobs`) are refused by name; fields
    that change nothing here (`user`, `store`, `metadata`, ...) are ignored.

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
    has_new_name = body.get("max_completion_tokens") is not None
    tokens_field = "max_completion_tokens" if has_new_name else "max_tokens"
    if body.get(tokens_field) is not None:
        fields["max_tokens"] = body[tokens_field]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        function = choice.get("function")
        choice = function.get("name") if isinstance(function, Mapping) else None
    if isinstance(choice, str):
        fields["tool_choice"] = choice
    elif choice is not None:
        errors.append(FieldError("tool_choice", f"must be a string or a function (got {choice!r})"))
    try:
        request = GenerationRequest.build(fields)
    except RequestValidationError as exc:
        renamed = [
            FieldError(tokens_field, e.message) if e.path == "max_tokens" else e for e in exc.errors
        ]
        raise RequestValidationError(errors + renamed) from None
    if errors:
        raise RequestValidationError(errors)
    return request


def _finish_reason(generation: Generation) -> str:
    if generation.tool_calls:
        return "tool_calls"
    return generation.finish_reason or "stop"


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion(generation: Generation, *, model: str, request_id: str) -> dict[str, Any]:
    """A whole generation as a `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": generation.response}
    if generation.tool_calls:
        message["content"] = generation.response or None
        message["tool_calls"] = [c.to_wire("function") for c in generation.tool_calls]
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish_reason(generation),
                "logprobs": None,
            }
        ],
        "usage": _usage(generation.usage),
    }


def _tool_call_delta(index: int, call: ToolCall) -> dict[str, Any]:
    return {"index": index, **call.to_wire("function")}


async def completion_frames(
    runtime: Runtime,
    request: GenerationRequest,
    *,
    model: str,
    request_id: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """A streamed generation as `chat.completion.chunk` events, then `[DONE]`."""
    head = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return data_frame({**head, "choices": [choice]})

    seen: list[StreamChunk] = []
    calls = 0
    async with aclosing(as_generator(runtime.stream(request))) as chunks:
        async for piece in chunks:
            if not seen:
                yield chunk({"role": "assistant", "content": ""})
            seen.append(piece)
            if piece.response:
                yield chunk({"content": piece.response})
            for call in piece.tool_calls:
                yield chunk({"tool_calls": [_tool_call_delta(calls, call)]})
                calls += 1
    if not seen:
        yield chunk({"role": "assistant", "content": ""})
    generation = StreamChunk.join(seen)
    yield chunk({}, _finish_reason(generation))
    if include_usage:
        yield data_frame({**head, "choices": [], "usage": _usage(generation.usage)})
    yield DONE
