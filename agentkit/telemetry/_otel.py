"""The spans and metrics, through the OpenTelemetry API (imported only when telemetry is on).

Names and attributes follow the GenAI semantic conventions: `invoke_agent {name}` (internal),
`chat {model}` (client), `execute_tool {name}` (internal); HTTP server spans for `agentkit
serve`. Attribute names are written out here rather than imported from
`opentelemetry-semantic-conventions`, which agentkit does not depend on; the tests check them
against its constants.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from agentkit.errors import TransportError
from agentkit.model_api import Generation, Message, StreamChunk, Usage
from agentkit.usage import model_name

# Attribute names (GenAI, HTTP and error conventions).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
AGENT_NAME = "gen_ai.agent.name"
REQUEST_MODEL = "gen_ai.request.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_DESCRIPTION = "gen_ai.tool.description"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
ERROR_TYPE = "error.type"
RESEND_COUNT = "http.request.resend_count"
STATUS_CODE = "http.response.status_code"
# agentkit's own, for what the conventions have no name for.
STEPS = "agentkit.run.steps"
STOP_REASON = "agentkit.run.stop_reason"
COST = "agentkit.run.cost"
RETRY_DELAY = "agentkit.retry.delay"
RETRY_EVENT = "agentkit.http.retry"

SAMPLING = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}
PROVIDERS = {"workers-ai": "cloudflare.workers_ai", "openai": "openai", "local": "llama_cpp"}
"""`gen_ai.provider.name` per runtime; other runtimes report their own name."""

# The conventions' advised bucket boundaries.
TOKEN_BUCKETS = [4.0**n for n in range(14)]
DURATION_BUCKETS = [0.01 * 2.0**n for n in range(14)]

_IN_CHAT = otel_context.create_key("agentkit.chat")  # a chat span is open: don't nest another


def provider_of(runtime: Any) -> str:
    name = str(getattr(runtime, "name", "unknown"))
    return PROVIDERS.get(name, name)


def error_type(error: BaseException) -> str:
    return type(error).__qualname__


def _describe(error: BaseException) -> str:
    # agentkit's transport errors build their own messages with credentials scrubbed out;
    # anything else may carry content, so only its type is told.
    if isinstance(error, TransportError):
        return str(error)[:500]
    return error_type(error)


def _fail(span: Span, error: BaseException, kind: str | None = None) -> None:
    span.set_attribute(ERROR_TYPE, kind or error_type(error))
    span.set_status(Status(StatusCode.ERROR, _describe(error)))


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _parts(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_call_response", "id": message.tool_call_id, "response": message.content}
        ]
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "content": message.content})
    for call in message.tool_calls:
        parts.append(
            {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        )
    return parts


def input_messages(messages: Sequence[Message]) -> dict[str, str]:
    """The content attributes of a conversation: system instructions apart, as the
    conventions structure them."""
    system = [{"type": "text", "content": m.content} for m in messages if m.role == "system"]
    rest = [{"role": m.role, "parts": _parts(m)} for m in messages if m.role != "system"]
    out = {INPUT_MESSAGES: _dump(rest)}
    if system:
        out[SYSTEM_INSTRUCTIONS] = _dump(system)
    return out


def output_message(message: Message, finish_reason: str | None) -> str:
    return _dump([{"role": "assistant", "parts": _parts(message), "finish_reason": finish_reason}])


def _server(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    out: dict[str, Any] = {"server.address": parts.hostname or ""}
    if parts.port:
        out["server.port"] = parts.port
    return out


class Tracing:
    """One configuration of agentkit's telemetry: a tracer, two histograms, the content
    setting; and the operations the call sites use."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, *, capture_content: bool) -> None:
        try:
            release = version("agentkit")
        except PackageNotFoundError:  # pragma: no cover - run from a source tree
            release = "0"
        self.tracer_provider = tracer_provider
        self.capture_content = capture_content
        self.tracer = trace.get_tracer("agentkit", release, tracer_provider=tracer_provider)
        meter = metrics.get_meter("agentkit", release, meter_provider=meter_provider)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._tools: dict[int, Span] = {}  # open tool spans, by id() of their ToolCallRecord

    # -- a run ---------------------------------------------------------------------------------

    @contextmanager
    def agent_run(self, agent: Any, run: Any) -> Iterator[None]:
        """The `invoke_agent` span around a run; `run.runtime` becomes a traced runtime."""
        runtime = agent.runtime
        name = getattr(agent, "name", None)
        attributes: dict[str, Any] = {
            OPERATION: "invoke_agent",
            PROVIDER: provider_of(runtime),
            REQUEST_MODEL: model_name(runtime),
        }
        if name:
            attributes[AGENT_NAME] = name
        if self.capture_content:
            attributes.update(input_messages(run.messages))
        span = self.tracer.start_span(
            f"invoke_agent {name}" if name else "invoke_agent",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        run.runtime = self.runtime(runtime)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            otel_context.detach(token)
            self._end_run(span, run)

    def _end_run(self, span: Span, run: Any) -> None:
        for record in run.records:  # calls cut off by cancellation
            open_span = self._tools.pop(id(record), None)
            if open_span is not None:
                open_span.set_attribute(ERROR_TYPE, "cancelled")
                open_span.set_status(Status(StatusCode.ERROR, "cancelled"))
                open_span.end()
        usage: Usage = run.usage
        span.set_attributes(
            {
                STEPS: run.steps,
                STOP_REASON: run.stop_reason or "error",
                INPUT_TOKENS: usage.prompt_tokens,
                OUTPUT_TOKENS: usage.completion_tokens,
            }
        )
        if run.cost is not None:
            span.set_attribute(COST, run.cost)
        last = run.messages[-1] if run.messages else None
        if self.capture_content and run.stop_reason and last and last.role == "assistant":
            span.set_attribute(OUTPUT_MESSAGES, output_message(last, "stop"))
        span.end()

    # -- model calls ---------------------------------------------------------------------------

    def runtime(self, runtime: Any) -> Any:
        return runtime if isinstance(runtime, TracedRuntime) else TracedRuntime(self, runtime)

    def start_chat(self, runtime: Any, request: Any, *, stream: bool) -> _Chat:
        return _Chat(self, runtime, request, stream)

    # -- tool calls ----------------------------------------------------------------------------

    def _start_tool(self, record: Any, tool: Any, parent: otel_context.Context | None) -> Span:
        call = record.call
        attributes: dict[str, Any] = {
            OPERATION: "execute_tool",
            TOOL_NAME: call.name,
            TOOL_CALL_ID: call.id,
            TOOL_TYPE: "function",
        }
        if getattr(tool, "description", None):
            attributes[TOOL_DESCRIPTION] = tool.description
        if self.capture_content:
            attributes[TOOL_ARGUMENTS] = call.arguments_json()
        span = self.tracer.start_span(
            f"execute_tool {call.name}", parent, kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._tools[id(record)] = span
        return span

    @contextmanager
    def tool_call(self, record: Any, tool: Any) -> Iterator[None]:
        """The span of an async tool's call, current while it runs (so that what the tool
        does nests under it); `tool_result` ends it."""
        span = self._start_tool(record, tool, None)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            otel_context.detach(token)
            if self._tools.pop(id(record), None) is not None:  # never filed: cancelled
                span.set_attribute(ERROR_TYPE, "cancelled")
                span.end()

    def threaded(self, record: Any, tool: Any, function: Any) -> Any:
        """`function` (run on a worker thread) with its tool span current while it runs."""
        parent = otel_context.get_current()

        def call() -> Any:
            span = self._start_tool(record, tool, parent)
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            try:
                return function()
            finally:
                otel_context.detach(token)

        return call

    def tool_result(self, record: Any, error: BaseException | None) -> None:
        """End a tool call's span with what came of it."""
        span = self._tools.pop(id(record), None)
        if span is None:  # given up before it started
            return
        if error is not None:
            _fail(span, error)
        elif self.capture_content and record.output is not None:
            span.set_attribute(TOOL_RESULT, record.output)
        span.end()

    # -- HTTP ----------------------------------------------------------------------------------

    def inject(self, carrier: MutableMapping[str, str]) -> None:
        propagate.inject(carrier)

    def http_retry(self, url: str, retry: int, error: BaseException, delay: float) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {
            RESEND_COUNT: retry + 1,
            ERROR_TYPE: error_type(error),
            RETRY_DELAY: round(delay, 3),
            **_server(url),
        }
        status = getattr(error, "status", None)
        if isinstance(status, int):
            attributes[STATUS_CODE] = status
        span.add_event(RETRY_EVENT, attributes)

    async def serve(self, app: Any, scope: Any, receive: Any, send: Any) -> None:
        """Run an ASGI request under a server span that continues the client's trace."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        method = scope.get("method", "GET")
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope.get("path", ""),
            "url.scheme": scope.get("scheme", "http"),
        }
        server = scope.get("server")
        if server and server[0]:
            attributes["server.address"] = server[0]
            attributes["server.port"] = server[1]
        span = self.tracer.start_span(
            method,
            propagate.extract(headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        status: list[int] = []

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                span.set_attribute(STATUS_CODE, status[0])
            await send(message)

        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await app(scope, receive, send_status)
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            otel_context.detach(token)
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            if status and status[0] >= 500:
                span.set_attribute(ERROR_TYPE, str(status[0]))
                span.set_status(Status(StatusCode.ERROR))
            span.end()


class _Chat:
    """One `chat {model}` span and its metrics."""

    def __init__(self, tracing: Tracing, runtime: Any, request: Any, stream: bool) -> None:
        self.tracing = tracing
        self.model = model_name(runtime)
        self.base = {
            OPERATION: "chat",
            PROVIDER: provider_of(runtime),
            REQUEST_MODEL: self.model,
        }
        attributes: dict[str, Any] = {**self.base, "gen_ai.request.stream": stream}
        for field, key in SAMPLING.items():
            value = getattr(request, field, None)
            if value is not None:
                attributes[key] = value
        messages = getattr(request, "messages", None)
        if tracing.capture_content and messages:
            attributes.update(input_messages(messages))
        self.span = tracing.tracer.start_span(
            f"chat {self.model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        self.context = otel_context.set_value(_IN_CHAT, True, trace.set_span_in_context(self.span))
        self.started = time.perf_counter()

    def finish(self, generation: Generation) -> None:
        span = self.span
        usage = generation.usage
        reason = generation.finish_reason or ("tool_calls" if generation.tool_calls else None)
        if reason:
            span.set_attribute(FINISH_REASONS, [reason])
        span.set_attributes(
            {INPUT_TOKENS: usage.prompt_tokens, OUTPUT_TOKENS: usage.completion_tokens}
        )
        if self.tracing.capture_content:
            message = Message.assistant(generation.response, generation.tool_calls)
            span.set_attribute(OUTPUT_MESSAGES, output_message(message, reason))
        span.end()
        self.tracing.duration.record(time.perf_counter() - self.started, self.base)
        for kind, count in (("input", usage.prompt_tokens), ("output", usage.completion_tokens)):
            self.tracing.token_usage.record(count, {**self.base, TOKEN_TYPE: kind})

    def fail(self, error: BaseException, kind: str | None = None) -> None:
        _fail(self.span, error, kind)
        self.span.end()
        failed = {**self.base, ERROR_TYPE: kind or error_type(error)}
        self.tracing.duration.record(time.perf_counter() - self.started, failed)


class TracedRuntime:
    """A runtime whose calls each get a `chat {model}` span (unless one is already open: a
    runtime that delegates to another is one model call, not two)."""

    def __init__(self, tracing: Tracing, inner: Any) -> None:
        self._tracing = tracing
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return repr(self.inner)

    async def generate(self, request: Any) -> Generation:
        if otel_context.get_value(_IN_CHAT):
            return await self.inner.generate(request)  # type: ignore[no-any-return]
        chat = self._tracing.start_chat(self.inner, request, stream=False)
        token = otel_context.attach(chat.context)
        try:
            generation: Generation = await self.inner.generate(request)
        except BaseException as exc:
            chat.fail(exc)
            raise
        finally:
            otel_context.detach(token)
        chat.finish(generation)
        return generation

    async def stream(self, request: Any) -> AsyncIterator[StreamChunk]:
        if otel_context.get_value(_IN_CHAT):
            async for chunk in self.inner.stream(request):
                yield chunk
            return
        chat = self._tracing.start_chat(self.inner, request, stream=True)
        chunks: list[StreamChunk] = []
        iterator = self.inner.stream(request)
        try:
            while True:
                # Current only while the inner stream works, not across our own yields: the
                # consumer's context is its own business.
                token = otel_context.attach(chat.context)
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    otel_context.detach(token)
                chunks.append(chunk)
                yield chunk
        except GeneratorExit:  # the consumer stopped early
            chat.fail(GeneratorExit(), "cancelled")
            raise
        except BaseException as exc:
            chat.fail(exc)
            raise
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
        chat.finish(StreamChunk.join(chunks))

    async def aclose(self) -> None:
        await self.inner.aclose()
