"""Server-sent events that start only once the first event exists, and stop when the client goes.

Holding the headers back until the first event means a request refused before any output (queue
full, a field the runtime cannot honour) still gets its proper HTTP status and JSON envelope.
Once streaming, a second task watches the connection: when the client disconnects, the scope is
cancelled and the event source is closed, which stops the model's generation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import anyio
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from agentkit.server.errors import ApiError, error_frame
from agentkit.server.queue import as_generator

__all__ = ["EventStream", "data_frame", "watch_disconnect"]

log = logging.getLogger("agentkit.server")

DONE = b"data: [DONE]\n\n"


def data_frame(data: Any, event: str | None = None) -> bytes:
    """One server-sent event holding `data` as compact JSON."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


async def watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancel `scope` when the client disconnects (call once the body has been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


class EventStream(Response):
    """An ASGI response streaming the frames of `frames` as `text/event-stream`.

    Args:
        frames: encoded events; an `ApiError` (or any exception) raised before the first
            frame becomes an ordinary error answer, one raised later an error event.
        to_error: turns an exception into the `ApiError` to answer with.
        openai: give error answers the `error` object OpenAI clients read.
    """

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        to_error: Callable[[Exception], ApiError],
        *,
        openai: bool = False,
    ) -> None:
        super().__init__(media_type="text/event-stream")
        self.frames = frames
        self.to_error = to_error
        self.openai = openai

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with aclosing(as_generator(self.frames)) as frames, anyio.create_task_group() as tg:
            tg.start_soon(watch_disconnect, receive, tg.cancel_scope)
            try:
                first = await anext(frames, b"")
            except Exception as exc:
                error = self.to_error(exc)
                _log(error, exc)
                answer = JSONResponse(
                    error.body(openai=self.openai),
                    status_code=error.status,
                    headers=error.headers(),
                )
                await answer(scope, receive, send)  # then stop watching: cancelled first, the
                tg.cancel_scope.cancel()  # answer's body would never be sent
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": first, "more_body": True})
            try:
                async for frame in frames:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
            except Exception as exc:
                error = self.to_error(exc)
                _log(error, exc)
                await send(
                    {"type": "http.response.body", "body": error_frame(error), "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            tg.cancel_scope.cancel()


def _log(error: ApiError, exc: Exception) -> None:
    # Failures of the server's own (5xx) were logged with their detail by `to_error`.
    if error.status < 500:
        log.info("stream refused: %s", error)
