"""Errors as the Workers AI API answers them: an HTTP status, a numeric code and a message.

The codes are Workers AI's own where it has one (5006 bad input, 5007 no such model, 5005 LoRA
unsupported, 3003 incomplete request, 3006 too large, 3008 aborted, 3040 out of capacity,
10000 authentication); 7000 (no route) and 5000 (internal error) are this server's choices.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from agentkit.errors import (
    RequestValidationError,
    TransportError,
    UnsupportedFeature,
    UserError,
)
from agentkit.runtimes.base import Runtime
from agentkit.wire.workers_ai import (
    ABORTED,
    AUTHENTICATION,
    BAD_INPUT,
    INCOMPLETE_REQUEST,
    INTERNAL,
    LORA_UNSUPPORTED,
    NO_ROUTE,
    NO_SUCH_MODEL,
    OUT_OF_CAPACITY,
    TOO_LARGE,
    envelope,
    error_envelope,
)

__all__ = [
    "ABORTED",
    "AUTHENTICATION",
    "BAD_INPUT",
    "CURRENT_REQUEST",
    "INCOMPLETE_REQUEST",
    "INTERNAL",
    "LORA_UNSUPPORTED",
    "NO_ROUTE",
    "NO_SUCH_MODEL",
    "OUT_OF_CAPACITY",
    "TOO_LARGE",
    "ApiError",
    "api_error",
    "envelope",
    "error_frame",
    "internal_error",
]

CURRENT_REQUEST: ContextVar[str] = ContextVar("agentkit_request_id", default="-")
"""The id of the request being answered (the `cf-ai-req-id` header), for errors and logs."""


class ApiError(Exception):
    """An error answer: `status`, then one `(code, message)` per problem."""

    def __init__(self, status: int, code: int, *messages: str) -> None:
        self.status = status
        self.code = code
        self.messages = list(messages)
        super().__init__(f"HTTP {status} [{code}] " + "; ".join(messages))

    def headers(self) -> dict[str, str]:
        """Headers that go with the answer: how to authenticate, when to retry."""
        if self.status == 401:
            return {"www-authenticate": "Bearer"}
        if self.status == 429:
            return {"retry-after": "1"}
        return {}

    def body(self, *, openai: bool = False) -> dict[str, Any]:
        """The failure envelope; `openai` adds the `error` object OpenAI clients read."""
        out = error_envelope(self.code, *self.messages)
        if openai:
            out["error"] = {
                "message": "; ".join(self.messages),
                "type": "invalid_request_error" if self.status < 500 else "server_error",
                "code": str(self.code),
            }
        return out


def api_error(exc: Exception, runtime: Runtime) -> ApiError:
    """The answer for an exception raised while handling a request."""
    while len(getattr(exc, "exceptions", ())) == 1:  # a task group's wrapping of one error
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestValidationError):
        return ApiError(400, BAD_INPUT, *(f"Bad input: {e}" for e in exc.errors))
    if isinstance(exc, UnsupportedFeature):
        if exc.feature == "lora" and not runtime.capabilities.lora:
            return ApiError(405, LORA_UNSUPPORTED, str(exc))
        return ApiError(400, BAD_INPUT, f"Bad input: {exc}")
    if isinstance(exc, UserError):
        return ApiError(400, BAD_INPUT, f"Bad input: {exc}")
    if isinstance(exc, TransportError):
        # A hosted runtime behind this server failed: pass its status and code on.
        status = exc.status if exc.status and exc.status >= 400 else 502
        return ApiError(status, exc.code or INTERNAL, exc.message)
    return internal_error()


def internal_error(request_id: str | None = None) -> ApiError:
    """The answer for an unexpected failure: the request id, never the exception's text (it
    may hold paths, prompts or secrets); the server logs the detail under the same id."""
    request_id = request_id or CURRENT_REQUEST.get()
    return ApiError(
        500, INTERNAL, f"internal error: the server's log has the detail (request {request_id})"
    )


def error_frame(error: ApiError) -> bytes:
    """A server-sent event telling a client that a started stream failed.

    It carries both the Workers AI `errors` list and the OpenAI `error` object (which the
    OpenAI SDK raises on); no `[DONE]` follows, so every client sees the stream as cut.
    """
    data = json.dumps(error.body(openai=True), ensure_ascii=False)
    return f"event: error\ndata: {data}\n\n".encode()
