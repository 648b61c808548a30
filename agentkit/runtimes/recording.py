"""Record real model traffic once, replay it offline: tests against real answers, no network.

```python
transport = RecordingTransport("tests/cassettes/weather.json", mode="once")
runtime = WorkersAI(client=httpx.AsyncClient(transport=transport))
```

`record` sends each request on (to `transport`, by default the network) and writes every
exchange to the file as it completes; `replay` answers from the file and never touches the
network; `once` replays when the file exists and records it when it does not. Requests are
matched by method, URL and body (JSON bodies compared as data); identical requests get their
recordings in order, and the last one again after that. Streams are recorded as they pass and
replayed line by line, a stream that broke off included.

Credentials never reach the file: request headers are not recorded, and the values of
`Authorization`-like headers are replaced by `REDACTED` wherever else they appear.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import httpx

from agentkit.errors import UserError

__all__ = ["NoRecording", "RecordingTransport"]

Mode = Literal["record", "replay", "once"]

_SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "cf-aig-authorization")
_DROPPED = {"content-encoding", "content-length", "transfer-encoding", "connection", "set-cookie"}
REDACTED = "REDACTED"


class NoRecording(UserError):
    """A replayed request has no recording: the request changed, or it was never recorded."""


def _load_body(text: str) -> dict[str, Any]:
    try:
        return {"json": json.loads(text)}
    except json.JSONDecodeError:
        return {"text": text}


def _stored_body(stored: dict[str, Any]) -> dict[str, Any]:
    return {key: stored[key] for key in ("json", "text") if key in stored}


def _body_text(stored: dict[str, Any]) -> str:
    if "json" in stored:
        return json.dumps(stored["json"], ensure_ascii=False)
    return str(stored.get("text", ""))


def _first_difference(recorded: Any, sent: Any, path: str = "") -> str:
    """Where two JSON values first differ, as a path (for the no-recording message)."""
    if isinstance(recorded, dict) and isinstance(sent, dict):
        for key in sorted(set(recorded) | set(sent)):
            if recorded.get(key) != sent.get(key):
                return _first_difference(recorded.get(key), sent.get(key), f"{path}.{key}")
    if isinstance(recorded, list) and isinstance(sent, list):
        if len(recorded) != len(sent):
            return f"{path or '.'} (length {len(recorded)} recorded, {len(sent)} sent)"
        for n, (a, b) in enumerate(zip(recorded, sent, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{n}]")
    return f"{path or '.'} (recorded {json.dumps(recorded)[:80]}, sent {json.dumps(sent)[:80]})"


class _Pieces(httpx.AsyncByteStream):
    """Replays a recorded body in its recorded pieces, then the recorded break, if any."""

    def __init__(self, pieces: list[str], error: str | None) -> None:
        self._pieces = pieces
        self._error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece.encode()
        if self._error is not None:
            raise httpx.RemoteProtocolError(f"replayed: {self._error}")


class _Tap(httpx.AsyncByteStream):
    """Passes a live body through while keeping a copy; reports it when closed."""

    def __init__(
        self, inner: httpx.AsyncByteStream, done: Callable[[list[bytes], str | None], None]
    ) -> None:
        self._inner = inner
        self._done = done
        self._parts: list[bytes] = []
        self._error: str | None = None
        self._reported = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._inner:
                self._parts.append(part)
                yield part
        except httpx.TransportError as exc:
            self._error = str(exc) or type(exc).__name__
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()
        if not self._reported:
            self._reported = True
            self._done(self._parts, self._error)


class RecordingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that records exchanges to a JSON file, or replays them.

    Args:
        path: the recording file.
        mode: `record` (overwrite the file), `replay` (the file must exist), or `once`
            (replay if the file exists, else record).
        transport: where `record` sends requests; default a plain `httpx.AsyncHTTPTransport`.

    Raises:
        NoRecording: in replay, for a request the file has no answer for (the message says
            what differs from the closest recording).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        mode: Mode = "replay",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.path = Path(path)
        if mode == "once":
            mode = "replay" if self.path.exists() else "record"
        if mode not in ("record", "replay"):
            raise UserError(f"mode: must be record, replay or once (got {mode!r})")
        self.mode: Literal["record", "replay"] = mode
        self.interactions: list[dict[str, Any]] = []
        """The exchanges recorded so far, or read from the file."""
        self._used: set[int] = set()
        self._transport = transport
        if mode == "replay":
            if not self.path.exists():
                raise NoRecording(f"no recording file at {self.path}; record it first")
            self.interactions = json.loads(self.path.read_text())["interactions"]
        elif transport is None:
            self._transport = httpx.AsyncHTTPTransport()

    @classmethod
    def record(
        cls, path: str | Path, transport: httpx.AsyncBaseTransport | None = None
    ) -> RecordingTransport:
        """Record to `path`, sending requests on to `transport` (default: the network)."""
        return cls(path, mode="record", transport=transport)

    @classmethod
    def replay(cls, path: str | Path) -> RecordingTransport:
        """Answer from the recording at `path`, offline."""
        return cls(path, mode="replay")

    def __repr__(self) -> str:
        return f"RecordingTransport({str(self.path)!r}, mode={self.mode!r})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = (await request.aread()).decode("utf-8", "replace")
        if self.mode == "replay":
            return self._replay(request, body)
        assert self._transport is not None
        secrets = [
            value.split(" ", 1)[-1]
            for name in _SECRET_HEADERS
            if (value := request.headers.get(name))
        ]

        def scrub(text: str) -> str:
            for secret in secrets:
                text = text.replace(secret, REDACTED)
            return text

        response = await self._transport.handle_async_request(request)
        headers = {k: scrub(v) for k, v in response.headers.items() if k.lower() not in _DROPPED}

        def done(parts: list[bytes], error: str | None) -> None:
            # Decode as the client would (charset, content-encoding), then store as text.
            text = httpx.Response(
                response.status_code, headers=response.headers, content=b"".join(parts)
            ).text
            self._save(
                {
                    "request": {
                        "method": request.method,
                        "url": scrub(str(request.url)),
                        **_load_body(scrub(body)),
                    },
                    "response": {
                        "status": response.status_code,
                        "headers": headers,
                        **_load_body(scrub(text)),
                        **({"error": scrub(error)} if error else {}),
                    },
                }
            )

        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tap(response.stream, done),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        """Close the transport requests were sent on (called by the client's `aclose`)."""
        if self._transport is not None:
            await self._transport.aclose()

    def _save(self, interaction: dict[str, Any]) -> None:
        self.interactions.append(interaction)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"interactions": self.interactions}, indent=2, ensure_ascii=False)
        self.path.write_text(text + "\n")

    def _replay(self, request: httpx.Request, body: str) -> httpx.Response:
        sent = _load_body(body)
        url = str(request.url)
        same_route = [
            n
            for n, item in enumerate(self.interactions)
            if item["request"]["method"] == request.method and item["request"]["url"] == url
        ]
        matches = [n for n in same_route if _stored_body(self.interactions[n]["request"]) == sent]
        if not matches:
            raise NoRecording(self._explain(request, sent, same_route))
        unused = [n for n in matches if n not in self._used]
        n = unused[0] if unused else matches[-1]
        self._used.add(n)
        stored = self.interactions[n]["response"]
        # Line by line, so a replayed stream arrives in pieces as a live one does.
        pieces = _body_text(stored).splitlines(keepends=True)
        return httpx.Response(
            stored["status"],
            headers=stored.get("headers", {}),
            stream=_Pieces(pieces, stored.get("error")),
            request=request,
        )

    def _explain(self, request: httpx.Request, sent: Any, same_route: list[int]) -> str:
        where = f"no recording in {self.path} for {request.method} {request.url}"
        if not same_route:
            urls = sorted(
                {f"{i['request']['method']} {i['request']['url']}" for i in self.interactions}
            )
            return f"{where}; recorded: {', '.join(urls) or 'nothing'}"
        closest = self.interactions[same_route[0]]["request"]
        recorded = closest.get("json", closest.get("text"))
        got = sent.get("json", sent.get("text"))
        return f"{where} with this body; it differs from the recorded one at " + _first_difference(
            recorded, got
        )
