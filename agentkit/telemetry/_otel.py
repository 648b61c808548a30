"""The spans and metrics, through the OpenTelemetry API (imported only when telemetry is on).

Names and attributes follow the GenAI semantic conventions: `invoke_agent {name}` (internal),
`chat {model}` (client, in `_model`), `execute_tool {name}` (internal); HTTP server spans for
`agentkit serve`; retries of the HTTP runtimes as events on the model call's span.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from agentkit.model_api import Usage
from agentkit.telemetry._conventions import (
    AGENT_NAME,
    COST,
    ERROR_TYPE,
    INPUT_TOKENS,
    OPERATION,
    OUTPUT_MESSAGES,
    OUTPUT_TOKENS,
    PROVIDER,
    REQUEST_MODEL,
    RESEND_COUNT,
    RETRY_DELAY,
    RETRY_EVENT,
    STATUS_CODE,
    STEPS,
    STOP_REASON,
    TOOL_ARGUMENTS,
    TOOL_CALL_ID,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    TOOL_RESULT,
    TOOL_TYPE,
    error_type,
    fail,
    input_messages,
    output_message,
    provider_of,
    server_of,
)
from agentkit.telemetry._instruments import Instruments
from agentkit.telemetry._model import TracedRuntime
from agentkit.usage import model_name


class Tracing(Instruments):
    """One configuration of agentkit's telemetry: a tracer, two histograms, the content
    setting; and the operations the call sites use."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, *, capture_content: bool) -> None:
        super().__init__(tracer_provider, meter_provider, capture_content=capture_content)
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
            fail(span, exc)
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
            fail(span, error)
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
            **server_of(url),
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
            fail(span, exc)
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
