"""What every endpoint shares: the queued runtime, the token check, the body reader, and the
wrapper that turns any exception into the Workers AI error envelope."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from agentkit.model_api import MAX_JSON_DEPTH, Generation, ModelRequest, json_depth
from agentkit.server.errors import (
    ABORTED,
    AUTHENTICATION,
    BAD_INPUT,
    CURRENT_REQUEST,
    INCOMPLETE_REQUEST,
    NO_SUCH_MODEL,
    TOO_LARGE,
    ApiError,
    api_error,
    internal_error,
)
from agentkit.server.queue import QueuedRuntime
from agentkit.server.sse import watch_disconnect
from agentkit.tools import Toolset
from agentkit.wire import workers_ai

if TYPE_CHECKING:
    from agentkit.agent import Agent

__all__ = [
    "CURRENT_REQUEST",
    "DEFAULT_MAX_BODY",
    "ServerState",
    "check_token",
    "endpoint",
    "internal_error",
    "parse_json",
]

log = logging.getLogger("agentkit.server")

DEFAULT_MAX_BODY = 4 * 1024 * 1024
"""The largest request body accepted, in bytes; a larger one gets a 413."""


@dataclass
class ServerState:
    """The configuration and the shared parts of one server."""

    runtime: QueuedRuntime
    """The model, behind the queue."""
    models: tuple[str, ...]
    """The model names the API answers to."""
    tools: Toolset
    """The tools the playground's agent may call."""
    max_body: int
    """The largest request body accepted, in bytes."""
    max_steps: int
    """Model calls the playground's agent may make per message."""
    api_token: str | None = field(default=None, repr=False)
    agent: Agent[Any] | None = None
    """The playground's agent as defined (`serve --agents`); None: one is made for each
    message from `tools` and the page's settings."""

    def authorize(self, request: Request) -> None:
        """Check the bearer token, when the server has one.

        Raises:
            ApiError: 401, code 10000, saying whether the token was missing or wrong.
        """
        if self.api_token is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401, AUTHENTICATION, "Authentication error: send Authorization: Bearer <token>"
            )
        # Header values arrive as bytes (Starlette decodes them as Latin-1): compare bytes.
        sent = token.strip().encode("latin-1")
        if not secrets.compare_digest(sent, self.api_token.encode()):
            raise ApiError(401, AUTHENTICATION, "Authentication error: the token is not valid")

    def check_model(self, model: str) -> None:
        """Raises: ApiError: 400, code 5007, listing the names this server answers to."""
        if model not in self.models:
            served = ", ".join(self.models)
            raise ApiError(
                400, NO_SUCH_MODEL, f"No such model {model} or task; this server serves: {served}"
            )

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object, refused past `max_body` bytes (without reading it all).

        Raises:
            ApiError: 413 (code 3006) too large, 400 (code 3003) empty, 400 (code 5006) not a
                JSON object.
        """
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise self._too_large(int(declared))
        body = bytearray()
        try:
            async for part in request.stream():
                body += part
                if len(body) > self.max_body:
                    raise self._too_large(len(body))
        except ClientDisconnect:
            raise ApiError(408, ABORTED, "Request was aborted: the body was cut off") from None
        if not body.strip():
            raise ApiError(400, INCOMPLETE_REQUEST, "Request is missing headers or body: body")
        return parse_json(bytes(body))

    def _too_large(self, size: int) -> ApiError:
        return ApiError(
            413, TOO_LARGE, f"Request is too large: {size} bytes (max_body is {self.max_body})"
        )

    async def generate(self, request: Request, generation: ModelRequest) -> Generation:
        """One whole generation, given up (and its queue place freed) if the client leaves.

        Raises:
            ApiError: 408, code 3008, when the client disconnected first.
        """
        result: Generation | None = None
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_disconnect, request.receive, tg.cancel_scope)
            try:
                result = await self.runtime.generate(generation)
            except Exception as exc:  # raised below, outside the task group
                error = exc
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        if result is None:
            raise ApiError(408, ABORTED, "Request was aborted: the client disconnected")
        return result

    def to_error(self, exc: Exception) -> ApiError:
        """The error answer for an exception; those of the server's own making are logged with
        their detail, which the answer leaves out."""
        error = api_error(exc, self.runtime)
        if error.status >= 500:
            detail = f"{type(exc).__name__}: {exc}"
            log.error("request %s failed: %s", CURRENT_REQUEST.get(), detail, exc_info=exc)
        return error


def check_token(token: str) -> str:
    """`token` if clients can send it: printable ASCII, no spaces (as in RFC 6750).

    Raises:
        ValueError: naming the position of the first other character (never the token).
    """
    for position, char in enumerate(token):
        if not "!" <= char <= "~":
            raise ValueError(
                f"api_token: must be printable ASCII without spaces: browsers and HTTP "
                f"libraries cannot send other characters unchanged (character {position + 1} "
                f"is U+{ord(char):04X})"
            )
    if not token:
        raise ValueError("api_token: must not be empty")
    return token


def parse_json(body: bytes) -> dict[str, Any]:
    """`body` as a JSON object; anything else is a 400 (code 5006) saying what is wrong.

    Refused besides broken JSON: nesting deeper than 64, `NaN`/`Infinity` (not JSON), numbers
    too long to convert, and unpaired surrogates (`"\\ud800"`, no Unicode text can hold them).
    """
    try:
        data = workers_ai.loads(body)
    except RecursionError:
        raise _bad(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # also JSONDecodeError, UnicodeDecodeError, long numbers
        raise _bad(f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "null"
        raise _bad(f"the body must be a JSON object (got {kind})")
    if json_depth(data) > MAX_JSON_DEPTH:
        raise _bad(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    if b"\\u" in body:  # only an escape can make a surrogate
        try:
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            lone = exc.object[exc.start]
            raise _bad(f"the body holds an unpaired surrogate ({lone!a})") from None
    return data


def _bad(why: str) -> ApiError:
    return ApiError(400, BAD_INPUT, f"Bad input: {why}")


Handler = Callable[[ServerState, Request], Awaitable[Response]]


def endpoint(
    state: ServerState, handler: Handler, *, openai: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint running `handler`, answering its errors in the envelope."""

    async def run(request: Request) -> Response:
        try:
            return await handler(state, request)
        except Exception as exc:
            error = state.to_error(exc)
            return JSONResponse(
                error.body(openai=openai), status_code=error.status, headers=error.headers()
            )

    return run
