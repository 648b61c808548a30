"""What the HTTP runtimes share: retries with backoff, server-sent events, error mapping.

The rules follow the official SDKs: retry connection errors, timeouts, 408, 409, 429 and 5xx,
at most `max_retries` times, waiting `min(0.5 * 2**n, 8)` seconds less up to a quarter of
jitter, or what the service asks for in `retry-after-ms` / `Retry-After` when that is under a
ceiling. Workers AI's daily limit (code 3036) is a 429 that no wait within a run will cure, so it
is never retried; its capacity error (3040) is. A stream is retried only until its first event
reached the caller: after that a retry would repeat text the caller already has.

Deadlines: httpx's timeouts bound each phase (connect, each read), so a reply trickling a byte
at a time would never end. On top of them, one attempt is bounded as a whole: a non-streamed
answer must be complete, and a stream's first event must arrive, within the attempt's deadline
of the request being sent; after that each event must follow the one before within it (a
stream may run long, but never stall). The deadline is `timeout` when it is a number, else the
`read` timeout of the `httpx.Timeout` (300 s by default).

The client's token is registered with `agentkit.errors.register_secret`: no error shows it,
whichever path builds the error, even as a piece of an excerpt.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
)
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from agentkit import telemetry
from agentkit.errors import (
    AuthError,
    BadRequest,
    ModelConnectionError,
    ModelHTTPError,
    ModelTimeout,
    NotFound,
    RateLimited,
    ServerError,
    StreamInterrupted,
    TransportError,
    UserError,
    register_secret,
)
from agentkit.runtimes._wrapping import wait_refused
from agentkit.wire import workers_ai

log = logging.getLogger("agentkit.http")

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=60.0, pool=30.0)
"""Model calls take long: up to five minutes between bytes before a read times out."""

Sleep = Callable[[float], Awaitable[None]]

# Workers AI error codes whose handling differs from what their HTTP status suggests.
_NOT_RETRIED = {workers_ai.DAILY_LIMIT}  # daily free allocation used up
_RETRIED = {workers_ai.TIMED_OUT, workers_ai.ABORTED, workers_ai.OUT_OF_CAPACITY}


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again.

    Attributes:
        max_retries: retries after the first attempt (0 turns retrying off).
        base_delay: the first backoff, doubled on each retry.
        max_delay: the longest backoff.
        max_retry_after: the longest wait a service may ask for; a longer `Retry-After` is not
            waited for, the error is raised at once (with `retry_after` set).
    """

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise UserError(f"max_retries: must be >= 0 (got {self.max_retries})")

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (from 0), with up to 25% jitter taken off."""
        nominal = min(self.base_delay * 2.0**retry, self.max_delay)
        return nominal * (1 - 0.25 * random.random())

    def delay(
        self, retry: int, error: TransportError, retry_after: float | None = None
    ) -> float | None:
        """Seconds to wait before retrying after `error`, or None not to retry.

        `retry_after` is the wait the response asked for; by default, the error's own.
        """
        if not error.retryable or retry >= self.max_retries:
            return None
        if retry_after is None:
            retry_after = getattr(error, "retry_after", None)
        if retry_after is None:
            return self.backoff(retry)
        if retry_after > self.max_retry_after:
            return None
        return max(retry_after, 0.0)


def parse_retry_after(
    headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the service asks to wait: `retry-after-ms`, else `Retry-After` (seconds or an
    HTTP date); None when neither is there or readable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now(), 0.0)


def error_from_response(
    status: int,
    body: Any,
    text: str = "",
    headers: Mapping[str, str] | None = None,
    *,
    secret: str | None = None,
) -> TransportError:
    """The typed error for an error response (or a 200 whose envelope says `success: false`).

    Args:
        status: the HTTP status.
        body: the response parsed as JSON (None if it was not JSON).
        text: the response as text, used when the body holds no message.
        headers: the response headers, read for `Retry-After`.
        secret: a credential to scrub from the message, should the service echo it.
    """
    message, code = workers_ai.decode_error(body, text)
    if secret:
        message = message.replace(secret, "[redacted]")
    kind = status if status >= 400 else workers_ai.CODE_STATUS.get(code or 0, status)
    retryable = kind in (408, 409, 429) or kind >= 500
    if code in _NOT_RETRIED:
        retryable = False
    elif code in _RETRIED:
        retryable = True
    fields: dict[str, Any] = {"status": status, "code": code, "retryable": retryable}
    if kind == 429:
        return RateLimited(message, **fields, retry_after=parse_retry_after(headers or {}))
    if kind in (401, 403):
        return AuthError(message, **fields)
    if kind == 404:
        return NotFound(message, **fields)
    if kind == 408:
        return ModelTimeout(message, **fields)
    if kind >= 500:
        return ServerError(message, **fields)
    if 400 <= kind < 500 and kind != 409:
        return BadRequest(message, **fields)
    return ModelHTTPError(message, **fields)


def error_from_exception(exc: httpx.TransportError, url: str) -> TransportError:
    """A connection failure or timeout as agentkit's error (retryable)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.replace("Timeout", "").lower() or "request"
        return ModelTimeout(f"{kind} timed out talking to {url}: {detail}", retryable=True)
    return ModelConnectionError(f"could not reach {url}: {detail}", retryable=True)


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event."""

    data: str
    """The data lines, joined with newlines."""
    event: str | None = None
    """The `event:` field, if any."""


_NEWLINE = re.compile(r"\r\n|\r|\n")


class SSEDecoder:
    """Turns text as it arrives into server-sent events (the WHATWG rules).

    Lines end in LF, CR or CRLF (even split across reads); `:` starts a comment; `data:` lines
    accumulate until a blank line ends the event; unknown fields are ignored.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, text: str) -> list[SSEEvent]:
        """The events completed by `text`."""
        self._buffer += text
        events: list[SSEEvent] = []
        while match := _NEWLINE.search(self._buffer):
            if match.group() == "\r" and match.end() == len(self._buffer):
                break  # maybe the first half of a CRLF: wait for more
            line = self._buffer[: match.start()]
            self._buffer = self._buffer[match.end() :]
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> SSEEvent | None:
        """The event left open when the text ended without its blank line, if any."""
        if self._buffer:
            self._line(self._buffer)
            self._buffer = ""
        return self._line("")

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = None
                return None
            event = SSEEvent("\n".join(self._data), self._event)
            self._data, self._event = [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


async def iter_sse(text: AsyncIterable[str]) -> AsyncGenerator[SSEEvent, None]:
    """Server-sent events from text chunks; an event left open at the end comes last."""
    decoder = SSEDecoder()
    async for chunk in text:
        for event in decoder.feed(chunk):
            yield event
    last = decoder.close()
    if last is not None:
        yield last


def decode_event(data: str) -> Any:
    """The JSON of one event's data.

    Raises:
        TransportError: the data is not JSON (a broken or foreign stream).
    """
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise TransportError(f"the stream sent an event that is not JSON: {data[:200]!r}") from None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


class _Secret:
    """A credential that never shows in a repr."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "[secure]"


class HTTPClient:
    """POSTs JSON to a model service, with retries, typed errors and SSE streams.

    Args:
        headers: sent with every request (e.g. `Authorization`); never logged.
        client: an `httpx.AsyncClient` to use; it stays open on `aclose()` (its owner closes it).
        timeout: seconds, or an `httpx.Timeout`; None means `DEFAULT_TIMEOUT`. Also bounds each
            attempt as a whole (see the module's docstring).
        deadline: seconds one attempt may take (a stream: until its first event, then
            between events), instead of the one derived from `timeout`; None: derived.
        retry: the retry policy.
        secret: a credential to keep out of every error message.
        sleep: how to wait between attempts (tests inject one that records the delays).
    """

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        secret: str | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self._headers = httpx.Headers(headers)  # its repr masks Authorization
        self._timeout = DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout)
        if deadline is None:
            deadline = float(timeout) if isinstance(timeout, (int, float)) else self._timeout.read
        if deadline is not None and not deadline > 0:
            raise UserError(f"deadline: must be > 0 seconds (got {deadline})")
        self.deadline = deadline
        register_secret(secret)
        self._owned = client is None
        self._client = client
        self._loop: anyio.lowlevel.EventLoopToken | None = None
        self.retry = retry or RetryPolicy()
        self._secret = _Secret(secret or "")
        self._sleep: Sleep = sleep or anyio.sleep

    def __repr__(self) -> str:
        return f"HTTPClient(retry={self.retry!r})"

    def _pool(self) -> httpx.AsyncClient:
        if not self._owned:
            assert self._client is not None
            return self._client
        loop = anyio.lowlevel.current_token()
        if self._client is None or loop != self._loop:
            # Connections belong to the event loop that opened them: a new loop (a second
            # `run_sync`) needs a new pool; the old one died with its loop.
            self._client = httpx.AsyncClient(timeout=self._timeout)
            self._loop = loop
        return self._client

    async def _wait(
        self, retry: int, error: TransportError, url: str, retry_after: float | None
    ) -> bool:
        delay = self.retry.delay(retry, error, retry_after)
        if delay is None or wait_refused(delay, asked=retry_after is not None):
            return False  # not to be retried, or not waited for here (`_wrapping`)
        log.info("retrying %s in %.2f s after: %s", url, delay, error)
        telemetry.http_retry(url, retry, error, delay)
        await self._sleep(delay)
        return True

    def _error(self, response: httpx.Response, body: Any, text: str) -> TransportError:
        return error_from_response(
            response.status_code, body, text, response.headers, secret=self._secret.value
        )

    def _overdue(self, url: str, what: str, delivered: bool = False) -> ModelTimeout:
        return ModelTimeout(
            f"timed out waiting for {what} from {url} (the deadline is {self.deadline:g} s)",
            retryable=not delivered,
        )

    async def post_json(self, url: str, body: Mapping[str, Any]) -> Any:
        """POST `body` and return the JSON answer, retrying what may be retried.

        Raises:
            TransportError: the service could not be reached, or answered with an error
                (an envelope with `success: false` counts, whatever the status).
        """
        retry = 0
        while True:
            retry_after = None
            try:
                with anyio.fail_after(self.deadline):
                    response = await self._pool().post(
                        url,
                        json=body,
                        headers=telemetry.with_traceparent(self._headers),
                        timeout=self._timeout,
                    )
                text = response.text
                data = _json(text)
                if response.is_error or workers_ai.is_failure(data):
                    retry_after = parse_retry_after(response.headers)
                    raise self._error(response, data, text)
                if data is None:
                    raise ModelHTTPError(
                        f"expected JSON from {url}, got {response.headers.get('content-type')!r}",
                        status=response.status_code,
                    )
                return data
            except httpx.TransportError as exc:
                error = error_from_exception(exc, url)
            except TransportError as exc:
                error = exc
            except TimeoutError:
                error = self._overdue(url, "the whole answer")
            if not await self._wait(retry, error, url, retry_after):
                raise error
            retry += 1

    async def stream_sse(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[SSEEvent]:
        """POST `body` and yield its server-sent events up to (not including) `data: [DONE]`.

        Raises:
            StreamInterrupted: the stream ended before `[DONE]`.
            TransportError: as `post_json`; never retried once an event was yielded.
        """
        retry = 0
        delivered = False
        while True:
            retry_after = None
            try:
                async with AsyncExitStack() as stack:
                    due = self._due()
                    with anyio.CancelScope(deadline=due) as scope:
                        response = await stack.enter_async_context(
                            self._pool().stream(
                                "POST",
                                url,
                                json=body,
                                headers=telemetry.with_traceparent(self._headers),
                                timeout=self._timeout,
                            )
                        )
                        kind = response.headers.get("content-type", "")
                        if response.is_error or "text/event-stream" not in kind:
                            await response.aread()
                    if scope.cancelled_caught:
                        raise self._overdue(url, "an answer")
                    if response.is_error or "text/event-stream" not in kind:
                        text = response.text
                        data = _json(text)
                        if response.is_error or workers_ai.is_failure(data):
                            retry_after = parse_retry_after(response.headers)
                            raise self._error(response, data, text)
                        raise ModelHTTPError(
                            f"expected an event stream from {url}, got {kind or 'no type'!r}",
                            status=response.status_code,
                        )
                    events = iter_sse(response.aiter_text())
                    stack.push_async_callback(events.aclose)
                    while True:
                        with anyio.CancelScope(deadline=due) as scope:
                            event = await anext(events, None)
                        if scope.cancelled_caught:
                            raise self._overdue(url, "the next event", delivered)
                        if event is None:
                            break
                        if event.data.strip() == "[DONE]":
                            return
                        delivered = True
                        yield event
                        due = self._due()
                    raise StreamInterrupted(
                        f"the stream from {url} ended before [DONE]: the answer is incomplete",
                        retryable=not delivered,
                    )
            except httpx.TransportError as exc:
                if delivered and not isinstance(exc, httpx.TimeoutException):
                    raise StreamInterrupted(
                        f"the stream from {url} broke off before [DONE] "
                        f"({exc or type(exc).__name__}): the answer is incomplete"
                    ) from exc
                error = error_from_exception(exc, url)
            except TransportError as exc:
                error = exc
            if delivered or not await self._wait(retry, error, url, retry_after):
                raise error
            retry += 1

    def _due(self) -> float:
        """When an attempt started now (or the event just delivered) is overdue."""
        return math.inf if self.deadline is None else anyio.current_time() + self.deadline

    async def aclose(self) -> None:
        """Close the connection pool, if this object opened it."""
        if self._owned and self._client is not None:
            if self._loop == anyio.lowlevel.current_token():
                await self._client.aclose()
            self._client = None
