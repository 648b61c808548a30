"""A scripted HTTP server on 127.0.0.1 and fake model services, for the hosted runtimes' tests.

`LoopbackServer` is agentkit's `BackgroundServer` (uvicorn in a thread on a free port) serving
scripted replies; `model_service` answers as Workers AI (`/ai/run/...`) or as an
OpenAI-compatible server (`/chat/completions`), told apart by the path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agentkit.server.background import BackgroundServer

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

# -- a loopback server the tests script -------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer: JSON, or an event stream sent in `sse` pieces."""

    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    sse: list[str] | None = None
    cut: bool = False
    """Break the connection after the pieces (no terminating chunk)."""
    delay: float = 0.0
    """Seconds to wait before answering."""
    pause: float = 0.0
    """Seconds to wait between stream pieces."""


@dataclass
class Seen:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any


def sse(*events: Any, done: bool = True) -> list[str]:
    """Event-stream pieces: each event as `data: <json>` and a blank line, then `[DONE]`."""
    pieces = [f"data: {json.dumps(e) if not isinstance(e, str) else e}\n\n" for e in events]
    return pieces + (["data: [DONE]\n\n"] if done else [])


class LoopbackServer(BackgroundServer):
    """A real HTTP server on 127.0.0.1 (an ephemeral port) whose answers a function decides.

    `script(*replies)` answers requests with the replies in order. Every request is kept in
    `requests`. Use it as a context manager: the server stops at the end.
    """

    def __init__(
        self,
        handler: Callable[[Seen], Reply] | None = None,
        app: Any = None,
        lifespan: str = "off",
    ) -> None:
        self.handler = handler or self._next
        self.requests: list[Seen] = []
        self._replies: list[Reply] = []
        if app is None:  # or serve a given ASGI application as it is
            routes = [Route("/{path:path}", self._endpoint, methods=["GET", "POST"])]
            app = Starlette(routes=routes)
        super().__init__(app, log_level="critical", lifespan=lifespan)

    def reset(self) -> None:
        """Forget the requests seen and the replies left."""
        self.handler = self._next
        self.requests.clear()
        self._replies.clear()

    def script(self, *replies: Reply) -> None:
        self.handler = self._next
        self._replies.extend(replies)

    def _next(self, seen: Seen) -> Reply:
        assert self._replies, f"no scripted reply left for {seen.method} {seen.path}"
        return self._replies.pop(0)

    async def _endpoint(self, request: Request) -> Response:
        raw = await request.body()
        seen = Seen(
            request.method,
            request.url.path,
            dict(request.headers),
            json.loads(raw) if raw else None,
        )
        self.requests.append(seen)
        reply = self.handler(seen)
        if reply.delay:
            await anyio.sleep(reply.delay)
        if reply.sse is None:
            return JSONResponse(reply.json, status_code=reply.status, headers=reply.headers)
        pieces = reply.sse

        async def body() -> Any:
            for piece in pieces:
                yield piece.encode()
                await anyio.sleep(reply.pause)
            if reply.cut:
                raise ConnectionAbortedError("the stream is cut on purpose")

        return StreamingResponse(
            body(), status_code=reply.status, headers=reply.headers, media_type="text/event-stream"
        )


# -- fake model services: call the offered tool once, then answer with its result ------------

ARGUMENTS = {"add": {"a": 2, "b": 3}, "calculate": {"expression": "2 + 3"}}
USAGE = {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26}


def _turn(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The fake model's decision: an answer, or a call of the first offered tool."""
    last = body["messages"][-1] if "messages" in body else {"role": "user", "content": ""}
    if last["role"] == "tool" or not body.get("tools"):
        return f"The result is {last['content']}.", None
    tool = body["tools"][0]
    name = tool["function"]["name"] if "function" in tool else tool["name"]
    return "", {"name": name, "arguments": ARGUMENTS.get(name, {})}


def workers_ai_model(seen: Seen) -> Reply:
    """Workers AI `/ai/run/`: envelopes, or event streams with padding and a usage chunk."""
    text, call = _turn(seen.json)
    calls = [call] if call else []
    if seen.json.get("stream"):
        words: list[dict[str, Any]] = [
            {"response": w, "p": "x" * (n + 1)} for n, w in enumerate(text.split(" "))
        ]
        for word in words[1:]:
            word["response"] = " " + word["response"]
        if calls:
            words = [{"response": "", "tool_calls": calls}]
        return Reply(sse=sse(*words, {"response": "", "usage": USAGE}))
    result = {"response": text if text else None, "tool_calls": calls, "usage": USAGE}
    return Reply(json={"result": result, "success": True, "errors": [], "messages": []})


def openai_model(seen: Seen) -> Reply:
    """OpenAI chat completions; streamed calls come as fragments of their arguments."""
    text, call = _turn(seen.json)
    base = {"id": "chatcmpl-1", "model": seen.json["model"], "created": 1}
    if not seen.json.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if call:
            arguments = json.dumps(call["arguments"])
            message["tool_calls"] = [
                {"id": "call_A", "type": "function", "function": {**call, "arguments": arguments}}
            ]
        finish = "tool_calls" if call else "stop"
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return Reply(
            json={**base, "object": "chat.completion", "choices": [choice], "usage": USAGE}
        )
    chunk = {**base, "object": "chat.completion.chunk"}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if call:
        arguments = json.dumps(call["arguments"])
        third = len(arguments) // 3
        parts = [arguments[:third], arguments[third : 2 * third], arguments[2 * third :]]
        first = {"index": 0, "id": "call_A", "type": "function"}
        deltas.append(
            {"tool_calls": [{**first, "function": {"name": call["name"], "arguments": ""}}]}
        )
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in parts]
    else:
        words = text.split(" ")
        deltas += [{"content": (" " if n else "") + w} for n, w in enumerate(words)]
    events: list[Any] = [
        {**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    finish = "tool_calls" if call else "stop"
    events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    events.append({**chunk, "choices": [], "usage": USAGE})
    return Reply(sse=sse(*events))


def model_service(seen: Seen) -> Reply:
    """Both APIs on one server, told apart by the path."""
    if seen.path.endswith("/chat/completions"):
        return openai_model(seen)
    return workers_ai_model(seen)


class Sleeps:
    """A sleep that records the delays it is asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# -- an OTLP/HTTP collector ---------------------------------------------------------------------


class Collector:
    """A loopback OTLP/HTTP receiver: decodes the protobuf bodies POSTed to /v1/traces and
    /v1/metrics (needs the `opentelemetry-proto` package)."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.traces: list[Any] = []
        self.metrics: list[Any] = []

        async def receive(request: Request) -> Response:
            body = await request.body()
            assert request.headers["content-type"] == "application/x-protobuf"
            if request.url.path == "/v1/traces":
                self.traces.append(ExportTraceServiceRequest.FromString(body))
            elif request.url.path == "/v1/metrics":
                self.metrics.append(ExportMetricsServiceRequest.FromString(body))
            else:
                return Response(b"", status_code=404)
            return Response(b"", media_type="application/x-protobuf")

        self.server = LoopbackServer(
            app=Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
        )

    def spans(self) -> list[Span]:
        return [
            span
            for request in self.traces
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def metric_names(self) -> set[str]:
        return {
            metric.name
            for request in self.metrics
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }
