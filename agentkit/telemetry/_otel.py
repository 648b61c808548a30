"""The spans and metrics, through the OpenTelemetry API (imported only when telemetry is on).

Names and attributes follow the GenAI semantic conventions: `invoke_agent {name}` (internal),
`chat {model}` (client, in `_model`), `execute_tool {name}` (internal); HTTP server spans for
`agentkit serve`; retries of the HTTP runtimes as events on the model call's span; a guardrail
that trips and a handoff as events on the run's span.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from agentkit.errors import GuardrailTripped
from agentkit.model_api import Usage
from agentkit.telemetry._conventions import (
    AGENT_NAME,
    COST,
    ERROR_TYPE,
    FALLBACK_EVENT,
    FALLBACK_FROM,
    GUARDRAIL_EVENT,
    GUARDRAIL_KIND,
    GUARDRAIL_NAME,
    HANDOFF_EVENT,
    HANDOFF_FROM,
    HANDOFF_TO,
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
    TOOL_ASKED,
    TOOL_CALL_ID,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    TOOL_RESULT,
    TOOL_TYPE,
    agent_name,
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

    # -- a run ---------------------------------------------------------------------------------

    def run_hooks(self, runtime: Any, name: str | None) -> RunSpans:
        """The hooks that trace one run of an agent on `runtime` named `name`."""
        return RunSpans(self, runtime, name)

    # -- model calls ---------------------------------------------------------------------------

    def runtime(self, runtime: Any) -> Any:
        return runtime if isinstance(runtime, TracedRuntime) else TracedRuntime(self, runtime)

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

    def fell_over(self, runtime: str, error: BaseException) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {FALLBACK_FROM: runtime, ERROR_TYPE: error_type(error)}
        status = getattr(error, "status", None)
        if isinstance(status, int):
            attributes[STATUS_CODE] = status
        span.add_event(FALLBACK_EVENT, attributes)

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


class RunSpans:
    """One run's spans, on the run's hooks (`agentkit.RunHooks`): `invoke_agent` from its
    start to its end, a `chat` span per model call (the model is wrapped), an `execute_tool`
    span per tool call, current while the tool runs so that what it does nests under it (an
    agent used as a tool: its own `invoke_agent` span)."""

    def __init__(self, tracing: Tracing, runtime: Any, name: str | None) -> None:
        self.tracing = tracing
        self.model = runtime
        self.name = name
        self.span: Span | None = None
        self.token: Any = None
        self.tools: dict[int, Span] = {}  # open tool spans, by id() of their ToolCallRecord

    async def on_run_start(self, ctx: Any) -> None:
        attributes: dict[str, Any] = {
            OPERATION: "invoke_agent",
            PROVIDER: provider_of(self.model),
            REQUEST_MODEL: model_name(self.model),
        }
        if self.name:
            attributes[AGENT_NAME] = self.name
        if self.tracing.capture_content:
            attributes.update(input_messages(list(ctx.messages)))
        self.span = self.tracing.tracer.start_span(
            f"invoke_agent {self.name}" if self.name else "invoke_agent",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        self.token = otel_context.attach(trace.set_span_in_context(self.span))

    def wrap_model(self, runtime: Any) -> Any:
        return self.tracing.runtime(runtime)

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
        if self.tracing.capture_content:
            attributes[TOOL_ARGUMENTS] = call.arguments_json()
        span = self.tracing.tracer.start_span(
            f"execute_tool {call.name}", parent, kind=SpanKind.INTERNAL, attributes=attributes
        )
        self.tools[id(record)] = span
        return span

    def wrap_tool(self, record: Any, tool: Any, function: Any) -> Any:
        """The call, with its span current while it runs (on its worker thread, for a sync
        tool); `after_tool` ends the span."""
        if tool.is_async:

            async def traced() -> Any:
                span = self._start_tool(record, tool, None)
                token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    return await function()
                finally:
                    otel_context.detach(token)

            return traced
        parent = otel_context.get_current()

        def threaded() -> Any:
            span = self._start_tool(record, tool, parent)
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            try:
                return function()
            finally:
                otel_context.detach(token)

        return threaded

    async def after_tool(self, ctx: Any, record: Any, error: BaseException | None) -> None:
        span = self.tools.pop(id(record), None)
        if span is None:  # given up before it started
            return
        if error is not None:
            fail(span, error)
        elif self.tracing.capture_content and record.output is not None:
            span.set_attribute(TOOL_RESULT, record.output)
        span.end()

    def handoff(self, from_agent: Any, to_agent: Any, call_id: str | None) -> None:
        """Note on the run's span that `from_agent` handed the conversation to `to_agent`
        (agents, or their names) with the call `call_id`: an `agentkit.handoff` event."""
        span = self.span
        if span is None:
            return
        attributes: dict[str, Any] = {
            HANDOFF_FROM: agent_name(from_agent),
            HANDOFF_TO: agent_name(to_agent),
        }
        if call_id:
            attributes[TOOL_CALL_ID] = call_id
        span.add_event(HANDOFF_EVENT, attributes)

    async def on_run_end(self, ctx: Any, result: Any, error: BaseException | None) -> None:
        span = self.span
        if span is None:
            return
        # A run that paused: its open calls asked a person (called again on resume); else they
        # were cut off by cancellation.
        asked = getattr(result, "stop_reason", None) == "approval"
        for open_span in self.tools.values():
            if asked:
                open_span.set_attribute(TOOL_ASKED, True)
            else:
                open_span.set_attribute(ERROR_TYPE, "cancelled")
                open_span.set_status(Status(StatusCode.ERROR, "cancelled"))
            open_span.end()
        self.tools.clear()
        if error is not None:
            fail(span, error)
            if isinstance(error, GuardrailTripped):
                tripped = {GUARDRAIL_NAME: error.guardrail, GUARDRAIL_KIND: error.kind}
                if error.tool is not None:
                    tripped[TOOL_NAME] = error.tool
                span.add_event(GUARDRAIL_EVENT, tripped)
        outcome = result if result is not None else getattr(error, "run", None)
        usage: Usage = ctx.usage
        span.set_attributes(
            {
                STEPS: ctx.step,
                STOP_REASON: getattr(outcome, "stop_reason", None) or "error",
                INPUT_TOKENS: usage.prompt_tokens,
                OUTPUT_TOKENS: usage.completion_tokens,
            }
        )
        cost = getattr(outcome, "cost", None)
        if cost is not None:
            span.set_attribute(COST, cost)
        messages = ctx.messages
        last = messages[-1] if messages else None
        if self.tracing.capture_content and outcome and last and last.role == "assistant":
            span.set_attribute(OUTPUT_MESSAGES, output_message(last, "stop"))
        otel_context.detach(self.token)
        span.end()
