"""What every endpoint shares: the queued runtime, the token check, the body reader, and the
wrapper that turns any exception into the Workers AI error envelope."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from agentkit.model_api import Generation, ModelRequest
from agentkit.server.errors import (
    ABORTED,
    AUTHENTICATION,
    BAD_INPUT,
    INCOMPLETE_REQUEST,
    NO_SUCH_MODEL,
    TOO_LARGE,
    ApiError,
    api_error,
)
from agentkit.server.queue import QueuedRuntime
from agentkit.server.sse import watch_disconnect
from agentkit.tools import Toolset
from agentkit.wire import workers_ai

__all__ = ["ServerState", "endpoint"]

log = logging.getLogger("agentkit.server")


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
        if not secrets.compare_digest(token.strip().encode(), self.api_token.encode()):
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
        try:
            data = workers_ai.loads(body)
        except ValueError as exc:
            raise ApiError(
                400, BAD_INPUT, f"Bad input: the body is not valid JSON ({exc})"
            ) from None
        if not isinstance(data, dict):
            kind = type(data).__name__ if data is not None else "null"
            raise ApiError(
                400, BAD_INPUT, f"Bad input: the body must be a JSON object (got {kind})"
            )
        return data

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
        """The error answer for an exception."""
        error = api_error(exc, self.runtime)
        if error.status >= 500:
            log.error("request failed: %s", error, exc_info=exc)
        return error


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
