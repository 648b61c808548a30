"""Traces of several agents: an agent used as a tool has its own `invoke_agent` span under the
calling run's `execute_tool` span, with its name and its own usage; a guardrail that trips and
a handoff are events on the run's span. Recorded by the OpenTelemetry SDK's in-memory
exporter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import StatusCode

from agentkit import (
    Agent,
    GuardrailResult,
    GuardrailTripped,
    OutputGuardrail,
    RunContext,
    ScriptedRuntime,
    Usage,
    handoff,
    telemetry,
    tool,
)
from agentkit.agent.core import current_run
from agentkit.telemetry.tree import render


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        telemetry.uninstrument()


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def own_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


def triage_and_billing() -> Agent:
    billing = Agent(
        ScriptedRuntime(
            [ScriptedRuntime.answer("Refunded.", Usage(prompt_tokens=7, completion_tokens=3))]
        ),
        name="billing",
    )
    return Agent(
        ScriptedRuntime(
            [
                ScriptedRuntime.call("billing", input="Refund order 7."),
                ScriptedRuntime.answer("Done.", Usage(prompt_tokens=11, completion_tokens=2)),
            ]
        ),
        name="triage",
        tools=[billing.as_tool(description="Handles billing.")],
    )


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_sub_agents_span_is_a_child_of_its_tool_call_with_its_name_and_usage(
    spans: InMemorySpanExporter, streamed: bool
) -> None:
    triage = triage_and_billing()
    if streamed:
        async for _ in triage.stream("Refund order 7, please."):
            pass
    else:
        await triage.run("Refund order 7, please.")
    root = named(spans, "invoke_agent triage")
    call = named(spans, "execute_tool billing")
    sub = named(spans, "invoke_agent billing")
    assert parent_id(root) is None
    assert parent_id(call) == own_id(root)
    assert parent_id(sub) == own_id(call)
    assert sub.context is not None and root.context is not None
    assert sub.context.trace_id == root.context.trace_id
    assert sub.attributes is not None and root.attributes is not None
    assert sub.attributes[gen_ai.GEN_AI_AGENT_NAME] == "billing"
    assert root.attributes[gen_ai.GEN_AI_AGENT_NAME] == "triage"
    # Each agent's span counts the tokens of its own model calls.
    assert (
        sub.attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS],
        sub.attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS],
    ) == (7, 3)
    assert (
        root.attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS],
        root.attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS],
    ) == (11, 2)
    # The sub-agent's model call is under its own run, not the caller's.
    billing_chats = [s for s in spans.get_finished_spans() if parent_id(s) == own_id(sub)]
    assert [s.name for s in billing_chats] == ["chat scripted"]


def not_a_refund(ctx: RunContext[Any], output: Any) -> GuardrailResult:
    return GuardrailResult.trip("promised money") if "refund" in output else GuardrailResult()


async def test_a_tripped_guardrail_is_an_event_on_the_runs_span(
    spans: InMemorySpanExporter,
) -> None:
    agent = Agent(
        ScriptedRuntime(["Sure, a refund is on its way."]),
        name="support",
        guardrails=[OutputGuardrail(not_a_refund, name="no-refunds")],
    )
    with pytest.raises(GuardrailTripped):
        await agent.run("Can I have my money back?")
    span = named(spans, "invoke_agent support")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "GuardrailTripped"
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert events == [
        (
            "agentkit.guardrail.tripped",
            {"agentkit.guardrail.name": "no-refunds", "agentkit.guardrail.kind": "output"},
        )
    ]
    # And in the tree `--trace` prints.
    assert "── guardrail no-refunds tripped on output\n" in render(spans.get_finished_spans())


@tool
def transfer(ctx: RunContext[None]) -> str:
    """Hand the conversation to billing."""
    run = current_run.get()
    assert run is not None
    run.note_handoff("triage", "billing", ctx.tool_call_id)
    return "transferred"


async def test_a_handoff_noted_by_the_run_is_an_event_on_its_span(
    spans: InMemorySpanExporter,
) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("transfer"), "Billing here."])
    agent = Agent(runtime, name="triage", tools=[transfer])
    result = await agent.run("Refund?")
    span = named(spans, "invoke_agent triage")
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert events == [
        (
            "agentkit.handoff",
            {
                "agentkit.handoff.from": "triage",
                "agentkit.handoff.to": "billing",
                gen_ai.GEN_AI_TOOL_CALL_ID: result.tool_calls[0].call.id,
            },
        )
    ]
    # On the run's span, not on the span of the call that made it.
    assert named(spans, "execute_tool transfer").events == ()
    tree = render(spans.get_finished_spans()).splitlines()
    assert tree[1].endswith("├── handoff triage -> billing")


async def test_a_real_handoff_and_its_return_are_events_on_the_runs_span(
    spans: InMemorySpanExporter,
) -> None:
    billing = Agent(ScriptedRuntime(["Order 7 is paid."]), name="billing")
    triage = Agent(
        ScriptedRuntime([ScriptedRuntime.call("transfer_to_billing"), "Yes, it is paid."]),
        name="triage",
        handoffs=[handoff(billing, returns=True)],
    )
    result = await triage.run("Is order 7 paid?")
    assert (result.output, result.agent) == ("Yes, it is paid.", "triage")
    call_id = result.handoffs[0].call_id
    span = named(spans, "invoke_agent triage")
    moves = [
        (
            e.name,
            dict(e.attributes or {})["agentkit.handoff.from"],
            dict(e.attributes or {})["agentkit.handoff.to"],
        )
        for e in span.events
    ]
    assert moves == [
        ("agentkit.handoff", "triage", "billing"),
        ("agentkit.handoff", "billing", "triage"),
    ]
    assert {dict(e.attributes or {})[gen_ai.GEN_AI_TOOL_CALL_ID] for e in span.events} == {call_id}


async def test_the_handoff_hook_takes_agents_and_names_them() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.instrument(tracer_provider=provider)
    try:
        tracing = telemetry.active()
        assert tracing is not None
        runtime = ScriptedRuntime(["hi"])
        spans = tracing.run_hooks(runtime, "triage")
        spans.handoff(Agent(runtime, name="triage"), Agent(runtime), None)  # no span yet
        agent = Agent(runtime, name="triage")
        run = agent.start("hello")
        await spans.on_run_start(run.context)
        spans.handoff(agent, Agent(ScriptedRuntime([]), name="billing"), "call_1")
        spans.handoff("billing", Agent(ScriptedRuntime([])), None)
        await spans.on_run_end(run.context, None, None)
    finally:
        telemetry.uninstrument()
    (span,) = exporter.get_finished_spans()
    assert [dict(e.attributes or {}) for e in span.events] == [
        {
            "agentkit.handoff.from": "triage",
            "agentkit.handoff.to": "billing",
            gen_ai.GEN_AI_TOOL_CALL_ID: "call_1",
        },
        {"agentkit.handoff.from": "billing", "agentkit.handoff.to": "agent"},
    ]


async def test_without_telemetry_a_noted_handoff_does_nothing() -> None:
    assert telemetry.active() is None
    runtime = ScriptedRuntime([ScriptedRuntime.call("transfer"), "Billing here."])
    result = await Agent(runtime, name="triage", tools=[transfer]).run("Refund?")
    assert result.tool_calls[0].output == "transferred"
