"""Traces and metrics, recorded by the real OpenTelemetry SDK into its in-memory exporters and
checked against the constants of `opentelemetry-semantic-conventions`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.trace import SpanKind, StatusCode

from agentkit import (
    Agent,
    ApprovalRequired,
    ModelPrice,
    RunContext,
    ScriptedRuntime,
    StreamChunk,
    Usage,
    WorkersAI,
    telemetry,
    tool,
)
from agentkit.events import RunFinished

from support.loopback import LoopbackServer, Reply, sse

CHAT = gen_ai.GenAiOperationNameValues.CHAT.value
EXECUTE_TOOL = gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value
INVOKE_AGENT = gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value
TOKEN = "tok-3f9a-never-in-a-trace"


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [s.name for s in self.finished()]
        return found[0]

    def histogram(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


def _recorder(capture_content: bool | None = None) -> Iterator[Recorded]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry.instrument(
        tracer_provider=provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        capture_content=capture_content,
    )
    try:
        yield Recorded(spans, reader)
    finally:
        telemetry.uninstrument()


@pytest.fixture
def otel() -> Iterator[Recorded]:
    """Telemetry on, content not captured (the default)."""
    yield from _recorder()


@pytest.fixture
def otel_content() -> Iterator[Recorded]:
    """Telemetry on, content captured (opted in)."""
    yield from _recorder(capture_content=True)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


def all_text(spans: Sequence[ReadableSpan]) -> str:
    """Every attribute, event and status of the spans, as one string to search."""
    parts: list[str] = []
    for span in spans:
        parts.append(span.name)
        parts.append(json.dumps(dict(span.attributes or {}), default=str))
        parts.append(str(span.status.description))
        for event in span.events:
            parts.append(event.name + json.dumps(dict(event.attributes or {}), default=str))
        parts.append(json.dumps(dict(span.resource.attributes), default=str))
    return "\n".join(parts)


# -- a run with parallel tool calls and a failed tool ------------------------------------------


async def test_a_run_is_an_invoke_agent_span_with_chat_and_tool_spans_under_it(
    otel: Recorded,
) -> None:
    both_started = anyio.Event()
    started = 0

    @tool
    async def lookup(city: str) -> str:
        """Look a city up; returns only once both lookups run, so they must overlap.

        Args:
            city: The city.
        """
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await both_started.wait()
        return f"{city}: sunny"

    @tool
    def explode() -> str:
        """Fails."""
        raise ValueError("the tool broke")

    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(
                ("lookup", {"city": "Paris"}), ("lookup", {"city": "Rome"}), ("explode", {})
            ).model_copy(update={"usage": Usage.of(30, 9)}),
            ScriptedRuntime.answer("Sunny in both.", Usage.of(50, 5)),
        ]
    )
    agent = Agent(runtime, tools=[lookup, explode], name="weather", temperature=0.2, max_tokens=99)
    with anyio.fail_after(10):
        result = await agent.run("Weather in Paris and Rome?")
    assert result.output == "Sunny in both."

    run = otel.one("invoke_agent weather")
    assert run.kind is SpanKind.INTERNAL
    assert run.attributes is not None
    assert run.attributes[gen_ai.GEN_AI_OPERATION_NAME] == INVOKE_AGENT
    assert run.attributes[gen_ai.GEN_AI_AGENT_NAME] == "weather"
    assert run.attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 80
    assert run.attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 14
    assert run.attributes["agentkit.run.steps"] == 2
    assert run.attributes["agentkit.run.stop_reason"] == "answer"

    chats = otel.named("chat scripted")
    assert len(chats) == 2
    first, second = sorted(chats, key=lambda s: s.start_time or 0)
    for chat in chats:
        assert chat.kind is SpanKind.CLIENT
        assert parent_of(chat) == span_id(run)
        assert chat.attributes is not None
        assert chat.attributes[gen_ai.GEN_AI_OPERATION_NAME] == CHAT
        assert chat.attributes[gen_ai.GEN_AI_PROVIDER_NAME] == "scripted"
        assert chat.attributes[gen_ai.GEN_AI_REQUEST_MODEL] == "scripted"
        assert chat.attributes[gen_ai.GEN_AI_REQUEST_TEMPERATURE] == 0.2
        assert chat.attributes[gen_ai.GEN_AI_REQUEST_MAX_TOKENS] == 99
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)
    assert first.attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 30
    assert first.attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 9
    assert second.attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)

    lookups = otel.named("execute_tool lookup")
    assert len(lookups) == 2
    ids = {record.call.id for record in result.tool_calls if record.call.name == "lookup"}
    for span in lookups:
        assert span.kind is SpanKind.INTERNAL
        assert parent_of(span) == span_id(run)
        assert span.attributes is not None
        assert span.attributes[gen_ai.GEN_AI_OPERATION_NAME] == EXECUTE_TOOL
        assert span.attributes[gen_ai.GEN_AI_TOOL_NAME] == "lookup"
        assert span.attributes[gen_ai.GEN_AI_TOOL_TYPE] == "function"
        assert ERROR_TYPE not in span.attributes
        assert span.status.status_code is not StatusCode.ERROR
    assert {s.attributes[gen_ai.GEN_AI_TOOL_CALL_ID] for s in lookups if s.attributes} == ids
    # The two calls ran side by side: each started before the other ended.
    a, b = lookups
    assert (a.start_time or 0) < (b.end_time or 0) and (b.start_time or 0) < (a.end_time or 0)
    # ... and between the model calls.
    assert (first.end_time or 0) <= (a.start_time or 0)
    assert (a.end_time or 0) <= (second.start_time or 0)

    failed = otel.one("execute_tool explode")
    assert parent_of(failed) == span_id(run)
    assert failed.attributes is not None
    assert failed.attributes[ERROR_TYPE] == "ValueError"
    assert failed.status.status_code is StatusCode.ERROR
    # The run carried on: the model was told, and answered.
    assert result.tool_calls[2].error == "ValueError: the tool broke"


async def test_metrics_follow_the_conventions(otel: Recorded) -> None:
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.answer("hi", Usage.of(12, 3)),
            ScriptedRuntime.answer("ho", Usage.of(7, 1)),
        ]
    )
    agent = Agent(runtime)
    await agent.run("a")
    await agent.run("b")

    tokens = otel.histogram(gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE)
    by_type = {p.attributes[gen_ai.GEN_AI_TOKEN_TYPE]: p for p in tokens}
    assert set(by_type) == {
        gen_ai.GenAiTokenTypeValues.INPUT.value,
        gen_ai.GenAiTokenTypeValues.OUTPUT.value,
    }
    assert (by_type["input"].count, by_type["input"].sum) == (2, 19)
    assert (by_type["output"].count, by_type["output"].sum) == (2, 4)
    for point in tokens:
        assert point.attributes[gen_ai.GEN_AI_OPERATION_NAME] == CHAT
        assert point.attributes[gen_ai.GEN_AI_REQUEST_MODEL] == "scripted"
    durations = otel.histogram(gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION)
    assert sum(p.count for p in durations) == 2


async def test_a_failed_model_call_has_its_error_type(otel: Recorded) -> None:
    from agentkit import ServerError

    runtime = ScriptedRuntime([ServerError("upstream down", status=502, retryable=True)])
    with pytest.raises(ServerError):
        await Agent(runtime).run("hi")
    chat = otel.one("chat scripted")
    assert chat.attributes is not None
    assert chat.attributes[ERROR_TYPE] == "ServerError"
    assert chat.status.status_code is StatusCode.ERROR
    run = otel.one("invoke_agent")
    assert run.attributes is not None
    assert run.attributes[ERROR_TYPE] == "ServerError"
    failed = otel.histogram(gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION)
    assert [p.attributes[ERROR_TYPE] for p in failed] == ["ServerError"]


# -- HTTP: a retried call, a streamed answer, the traceparent sent on -------------------------


async def _no_wait(_: float) -> None:
    return None


def _workers_ai(server: LoopbackServer) -> WorkersAI:
    return WorkersAI(
        "acct", TOKEN, base_url=f"{server.url}/client/v4", max_retries=2, sleep=_no_wait
    )


def _call_then_answer(server: LoopbackServer, *, stream: bool) -> None:
    """503, then a call of add(2, 3), then the answer: as event streams or envelopes."""
    call = [{"name": "add", "arguments": {"a": 2, "b": 3}}]
    usage = {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26}
    busy = {"success": False, "errors": [{"code": 7010, "message": "busy"}]}
    result: dict[str, Any]
    if stream:
        first = Reply(
            sse=sse({"response": "", "tool_calls": call}, {"response": "", "usage": usage})
        )
        answer = ({"response": "The sum"}, {"response": " is 5."}, {"response": "", "usage": usage})
        second = Reply(sse=sse(*answer))
    else:
        result = {"response": None, "tool_calls": call, "usage": usage}
        first = Reply(json={"result": result, "success": True})
        result = {"response": "The sum is 5.", "usage": usage}
        second = Reply(json={"result": result, "success": True})
    server.script(Reply(status=503, json=busy), first, second)


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


async def test_a_retried_streamed_http_run_shows_the_retry_and_sends_traceparent(
    otel: Recorded, server: LoopbackServer
) -> None:
    _call_then_answer(server, stream=True)
    agent = Agent(_workers_ai(server), tools=[add])
    deltas: list[str] = []
    async with aclosing(agent.stream("2 + 3?")) as events:
        async for event in events:
            if isinstance(event, RunFinished):
                result = event.result
            elif hasattr(event, "text"):
                deltas.append(event.text)
    assert result.output == "The sum is 5."
    assert "".join(deltas) == "The sum is 5."

    model = "@cf/meta/llama-3.1-8b-instruct"
    run = otel.one("invoke_agent")
    chats = sorted(otel.named(f"chat {model}"), key=lambda s: s.start_time or 0)
    assert len(chats) == 2
    assert all(parent_of(c) == span_id(run) for c in chats)
    retried, answered = chats
    assert retried.attributes is not None and answered.attributes is not None
    assert retried.attributes[gen_ai.GEN_AI_PROVIDER_NAME] == "cloudflare.workers_ai"
    assert retried.attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 20
    assert answered.attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 6
    # The 503 and the retry that cured it: an event on the model call's span.
    [retry] = retried.events
    assert retry.attributes is not None
    assert retry.name == "agentkit.http.retry"
    assert retry.attributes[HTTP_REQUEST_RESEND_COUNT] == 1
    assert retry.attributes[HTTP_RESPONSE_STATUS_CODE] == 503
    assert retry.attributes[ERROR_TYPE] == "ServerError"
    assert ERROR_TYPE not in retried.attributes  # the call itself succeeded
    assert answered.events == ()
    tool_span = otel.one("execute_tool add")
    assert parent_of(tool_span) == span_id(run)

    # Each request carried the trace context of its model call's span.
    seen = [r.headers["traceparent"].split("-")[1:3] for r in server.requests]
    assert run.context is not None
    trace_id = f"{run.context.trace_id:032x}"
    assert seen == [[trace_id, f"{span_id(c):016x}"] for c in (retried, retried, answered)]


async def test_no_content_is_recorded_by_default_and_the_token_never(
    otel: Recorded, server: LoopbackServer
) -> None:
    _call_then_answer(server, stream=False)
    result = await Agent(
        _workers_ai(server), tools=[add], instructions="Be brief, secret-instructions."
    ).run("What is 2 + 3, my-prompt-text?")
    assert result.output == "The sum is 5."
    text = all_text(otel.finished())
    for content in ("my-prompt-text", "secret-instructions", "The sum", '"a"', "Be brief"):
        assert content not in text
    for key in (
        gen_ai.GEN_AI_INPUT_MESSAGES,
        gen_ai.GEN_AI_OUTPUT_MESSAGES,
        gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS,
        gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS,
        gen_ai.GEN_AI_TOOL_CALL_RESULT,
    ):
        assert key not in text
    assert TOKEN not in text
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"  # it was sent


async def test_content_when_opted_in_but_still_never_the_token(
    otel_content: Recorded, server: LoopbackServer
) -> None:
    # The service echoes the token in its error: agentkit's error scrubs it.
    server.script(
        Reply(status=503, json={"errors": [{"message": f"bad {TOKEN}"}], "success": False}),
        Reply(json={"result": {"response": "Hello there."}, "success": True}),
    )
    result = await Agent(_workers_ai(server), instructions="Greet.").run("Say hello")
    assert result.output == "Hello there."
    chat = otel_content.one("chat @cf/meta/llama-3.1-8b-instruct")
    assert chat.attributes is not None
    assert json.loads(str(chat.attributes[gen_ai.GEN_AI_INPUT_MESSAGES])) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hello"}]}
    ]
    assert json.loads(str(chat.attributes[gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS])) == [
        {"type": "text", "content": "Greet."}
    ]
    output = json.loads(str(chat.attributes[gen_ai.GEN_AI_OUTPUT_MESSAGES]))
    assert output[0]["parts"] == [{"type": "text", "content": "Hello there."}]
    assert TOKEN not in all_text(otel_content.finished())


async def test_tool_arguments_and_results_when_opted_in(otel_content: Recorded) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=2, b=3), "5"])
    await Agent(runtime, tools=[add]).run("2 + 3?")
    span = otel_content.one("execute_tool add")
    assert span.attributes is not None
    assert json.loads(str(span.attributes[gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS])) == {"a": 2, "b": 3}
    assert span.attributes[gen_ai.GEN_AI_TOOL_CALL_RESULT] == "5"


def test_the_environment_variable_opts_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(telemetry.CAPTURE_CONTENT_VARIABLE, "true")
    for recorded in _recorder():
        runtime = ScriptedRuntime(["fine"])
        Agent(runtime).run_sync("how are you?")
        assert "how are you?" in all_text(recorded.finished())


# -- off, and following the global provider ----------------------------------------------------


def test_off_when_no_provider_is_configured() -> None:
    assert telemetry.active() is None
    runtime = ScriptedRuntime(["fine"])
    agent = Agent(runtime)
    agent.run_sync("hi")
    assert agent.runtime is runtime  # nothing wrapped, nothing recorded


async def test_a_global_tracer_provider_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    await Agent(ScriptedRuntime(["fine"]), name="global").run("hi")
    assert [s.name for s in spans.get_finished_spans()] == ["chat scripted", "invoke_agent global"]


# -- usage per model and cost --------------------------------------------------------------------


async def test_usage_per_model_across_runtimes_and_cost() -> None:
    local = ScriptedRuntime([ScriptedRuntime.answer("summary", Usage.of(100, 10))])
    local.model = "small-model"  # type: ignore[attr-defined]
    helper = Agent(local)

    @tool
    async def summarise(text: str) -> str:
        """Summarise with the small model.

        Args:
            text: What to summarise.
        """
        return (await helper.run(text)).output

    big = ScriptedRuntime(
        [
            ScriptedRuntime.call("summarise", text="long").model_copy(
                update={"usage": Usage.of(1000, 20)}
            ),
            ScriptedRuntime.answer("done", Usage.of(1100, 30)),
        ]
    )
    big.model = "big-model"  # type: ignore[attr-defined]
    prices = {"big-model": ModelPrice(input=2.0, output=8.0), "small-model": ModelPrice(0.1, 0.4)}
    result = await Agent(big, tools=[summarise], prices=prices).run("go")

    assert result.usage == Usage.of(2100, 50)  # this agent's own calls
    assert result.usage_by_model == {
        "big-model": Usage.of(2100, 50),
        "small-model": Usage.of(100, 10),
    }
    expected = (2100 * 2.0 + 50 * 8.0 + 100 * 0.1 + 10 * 0.4) / 1e6
    assert result.cost == pytest.approx(expected)
    again = type(result).model_validate_json(result.model_dump_json())
    assert again == result


async def test_no_cost_without_a_price_for_every_model() -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.answer("x", Usage.of(10, 1))])
    result = await Agent(runtime, prices={"other": ModelPrice(1, 1)}).run("go")
    assert result.cost is None
    assert result.usage_by_model == {"scripted": Usage.of(10, 1)}


def test_a_bad_price_is_refused_by_name() -> None:
    with pytest.raises(Exception, match=r"ModelPrice.output: must be a number >= 0 \(got -1\)"):
        ModelPrice(1.0, -1)
    with pytest.raises(Exception, match=r"prices\['m'\]: must be a ModelPrice"):
        Agent(ScriptedRuntime(), prices={"m": (1.0, 2.0)})  # type: ignore[dict-item]


class _Endless(ScriptedRuntime):
    """Streams one word, then nothing more until cancelled."""

    name = "endless"

    async def stream(self, request: Any) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(response="one")
        await anyio.sleep_forever()


async def test_a_stream_stopped_early_ends_its_spans_as_cancelled(otel: Recorded) -> None:
    async with aclosing(Agent(_Endless()).stream("count")) as events:
        async for event in events:
            if hasattr(event, "text"):
                break  # the consumer has seen enough
    chat = otel.one("chat endless")
    assert chat.attributes is not None
    assert chat.attributes[ERROR_TYPE] == "cancelled"
    assert chat.attributes[gen_ai.GEN_AI_REQUEST_STREAM] is True
    run = otel.one("invoke_agent")
    assert parent_of(chat) == span_id(run)
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None
    assert run.attributes[ERROR_TYPE] == "cancelled"


async def test_a_tool_that_asks_a_person_ends_its_span_as_asked_not_failed(
    otel: Recorded,
) -> None:
    @tool
    def wipe(disk: str, context: RunContext) -> str:
        """Wipe a disk.

        Args:
            disk: Which one.
        """
        if context.decision is None:
            raise ApprovalRequired(f"Wipe {disk}?")
        return "wiped"

    agent = Agent(ScriptedRuntime([ScriptedRuntime.call("wipe", disk="sdb"), "ok"]), tools=[wipe])
    paused = await agent.run("wipe sdb")
    asked = otel.one("execute_tool wipe")
    assert asked.attributes is not None and asked.attributes["agentkit.tool.asked"] is True
    assert asked.status.status_code != StatusCode.ERROR
    assert ERROR_TYPE not in asked.attributes
    assert paused.state is not None
    await agent.resume(paused.state, approve=[paused.pending[0].id])
    # Called again: a span of its own, ended as any call.
    again = otel.named("execute_tool wipe")[1]
    assert again.attributes is not None and "agentkit.tool.asked" not in again.attributes
