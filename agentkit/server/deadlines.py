"""Deadlines for slow clients, so a few idle sockets cannot hold the server.

uvicorn closes a keep-alive connection idle for `timeout_keep_alive` seconds, but it waits
forever for a request's headers (a fresh connection that sends nothing, or half a request line)
and for its body. Two additions close that gap:

- `protocol(header_timeout)`: uvicorn's h11 protocol with a timer running whenever the
  connection owes headers (or the rest of a body nobody reads any more); when it fires, the
  connection is closed.
- `BodyDeadline`: an ASGI middleware bounding the time an application waits for the body; past
  it the read fails with 408 (code 3003) and the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import h11
import uvicorn
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from agentkit.server.errors import INCOMPLETE_REQUEST, ApiError

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_KEEP_ALIVE",
    "BodyDeadline",
    "protocol",
    "uvicorn_config",
]

DEFAULT_HEADER_TIMEOUT = 5.0
"""Seconds a connection may take to send a request's headers."""
DEFAULT_BODY_TIMEOUT = 10.0
"""Seconds a request may take to send its body, once its headers are in."""
DEFAULT_KEEP_ALIVE = 5
"""Seconds an idle keep-alive connection stays open."""


class BodyTimeout(ApiError):
    """The client did not send its whole body in time."""


class BodyDeadline:
    """Fails an application's wait for the request body after `timeout` seconds (in all).

    Args:
        app: the application behind it.
        timeout: seconds from the request's start until its body must be complete.
    """

    def __init__(self, app: ASGIApp, *, timeout: float = DEFAULT_BODY_TIMEOUT) -> None:
        if not timeout > 0:
            raise ValueError(f"body_timeout: must be > 0 (got {timeout})")
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = anyio.current_time() + self.timeout
        headers = Headers(scope=scope)
        body_done = headers.get("content-length", "0") == "0" and not headers.get(
            "transfer-encoding"
        )
        timed_out = False

        async def receive_in_time() -> Message:
            nonlocal body_done, timed_out
            if body_done:
                return await receive()
            with anyio.move_on_after(deadline - anyio.current_time()):
                message = await receive()
                body_done = message["type"] != "http.request" or not message.get("more_body")
                return message
            timed_out = True
            raise BodyTimeout(
                408,
                INCOMPLETE_REQUEST,
                f"Request timed out: the body was not complete within {self.timeout:g} s",
            )

        async def send_closing(message: Message) -> None:
            # Whatever the answer, a connection with half a body left is of no further use.
            if message["type"] == "http.response.start" and (timed_out or not body_done):
                MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        await self.app(scope, receive_in_time, send_closing)


class _DeadlineProtocol(H11Protocol):
    """H11Protocol closing a connection that takes more than `header_timeout` seconds to send a
    request's headers, or trickles a body after its answer was sent."""

    header_timeout = DEFAULT_HEADER_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        # Idle between requests is uvicorn's keep-alive timeout; the next request's first
        # bytes start this timer again.
        self._cancel()
        super().on_response_complete()

    def _watch(self) -> None:
        if self.transport.is_closing():
            return
        answered = self.cycle is None or self.cycle.response_complete
        owing = self.conn.their_state is h11.IDLE or self.conn.their_state is h11.SEND_BODY
        if answered and owing:
            if self._deadline is None:
                self._deadline = self.loop.call_later(self.header_timeout, self._expire)
        else:
            self._cancel()

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol(header_timeout: float = DEFAULT_HEADER_TIMEOUT) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline of `header_timeout` seconds for headers."""
    if not header_timeout > 0:
        raise ValueError(f"header_timeout: must be > 0 (got {header_timeout})")
    return type("DeadlineProtocol", (_DeadlineProtocol,), {"header_timeout": header_timeout})


def uvicorn_config(
    app: ASGIApp,
    *,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive: int = DEFAULT_KEEP_ALIVE,
    **options: Any,
) -> uvicorn.Config:
    """A uvicorn configuration serving `app` with the header deadline and keep-alive timeout.

    Args:
        app: the ASGI application.
        header_timeout: seconds a connection may take to send a request's headers.
        keep_alive: seconds an idle keep-alive connection stays open.
        **options: other `uvicorn.Config` options (host, port, log_level...).
    """
    if keep_alive < 1:
        raise ValueError(f"keep_alive: must be >= 1 (got {keep_alive})")
    return uvicorn.Config(
        app, http=protocol(header_timeout), timeout_keep_alive=keep_alive, **options
    )
