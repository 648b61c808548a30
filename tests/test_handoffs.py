"""Handoffs (`agentkit.agent.handoffs`): the agent in force changes for the rest of a run; it
may give control back; a paused or killed run is taken up in the agent that was in force."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from agentkit import (
    Agent,
    Generation,
    HandedOff,
    MemorySession,
    Message,
    ModelPrice,
    ModelRequest,
    RunFinished,
    RunHooks,
    RunState,
    RunStateError,
    ScriptedRuntime,
    TextDelta,
    ToolResults,
    Usage,
    UserError,
    drop_tool_traffic,
    handoff,
    keep_last,
    tool,
)
from agentkit.agent.results import HandoffRecord
from agentkit.runtimes.openai import OpenAICompatible
from agentkit.sessions import history
from agentkit.tools.context import RunContext

from support import SUPPORT
from support.helpers import add, kill_when_paused
from support.loopback import USAGE, LoopbackServer, openai_model

call = ScriptedRuntime.call


@tool
def invoice(order: int) -> str:
    """An order's invoice.

    Args:
        order: The order number.
    """
    return f"order {order}: 12.50 EUR, paid"


@tool
def lookup(order: int) -> str:
    """Look an order up.

    Args:
        order: The order number.
    """
    return f"order {order}: shipped"


@tool(requires_approval=True)
def refund(order: int) -> str:
    """Refund an order.

    Args:
        order: The order number.
    """
    return f"refunded {order}"


def used(text: str, prompt: int, completion: int) -> Generation:
    return ScriptedRuntime.answer(text, Usage.of(prompt, completion))


def calling(name: str, prompt: int, completion: int, **arguments: Any) -> Generation:
    return call(name, **arguments).model_copy(update={"usage": Usage.of(prompt, completion)})


def named(runtime: ScriptedRuntime, model: str) -> ScriptedRuntime:
    runtime.model = model  # type: ignore[attr-defined]  # what `model_name` reports
    return runtime


def roles(messages: list[Message]) -> list[str]:
    return [m.role + (":" + m.tool_calls[0].name if m.tool_calls else "") for m in messages]


# -- taking over ----------------------------------------------------------------------------


@dataclass
class Verdict:
    refund: bool
    reason: str


def test_the_receiving_agent_instructions_tools_output_type_and_sampling_are_in_force() -> None:
    refunds_model = ScriptedRuntime(
        [call("lookup", order=7), '{"refund": true, "reason": "never arrived"}']
    )
    refunds = Agent(
        refunds_model,
        tools=[lookup],
        name="refunds",
        instructions="You decide refunds.",
        output_type=Verdict,
        temperature=0.1,
    )
    triage_model = ScriptedRuntime([call("transfer_to_refunds")])
    triage = Agent(
        triage_model,
        tools=[invoice],
        name="triage",
        instructions="You route questions.",
        handoffs=[refunds],
        temperature=0.9,
    )
    result = triage.run_sync("My order 7 never came; money back?")
    output: Any = result.output  # the type of the agent that answered, not of triage
    assert output == Verdict(refund=True, reason="never arrived")
    assert result.agent == "refunds"
    assert [t.name for t in triage_model.requests[0].tools] == ["invoice", "transfer_to_refunds"]
    first = refunds_model.requests[0]
    assert first.messages[0].role == "system"
    assert first.messages[0].content.startswith("You decide refunds.")
    assert [t.name for t in first.tools] == ["lookup"]
    assert first.temperature == 0.1 and triage_model.requests[0].temperature == 0.9
    assert first.response_format is not None  # the receiving agent's output type
    assert triage_model.requests[0].response_format is None
    # It sees the conversation: the user's message, the transfer and its result.
    assert roles(first.messages) == ["system", "user", "assistant:transfer_to_refunds", "tool"]
    assert first.messages[-1].content == "Transferred to refunds."
    assert result.tool_calls[1].output == "order 7: shipped"  # its own tool ran
    record = result.handoffs[0]
    assert (record.source, record.target, record.step, record.returned) == (
        "triage",
        "refunds",
        1,
        False,
    )
    assert record.call_id == result.tool_calls[0].call.id


def test_the_transfer_tool_is_described_by_the_target_or_the_handoff() -> None:
    billing = Agent(ScriptedRuntime([]), name="billing", instructions="You answer billing.")
    shipping = Agent(ScriptedRuntime([]), name="shipping")
    triage = Agent(
        ScriptedRuntime([]),
        name="triage",
        handoffs=[billing, handoff(shipping, description="Where parcels are.")],
    )
    tools = {t.name: t.description for t in triage.toolset}
    assert tools == {
        "transfer_to_billing": "You answer billing.",
        "transfer_to_shipping": "Where parcels are.",
    }


def test_a_transfer_without_an_input_type_takes_no_arguments() -> None:
    billing = Agent(ScriptedRuntime(["Paid."]), name="billing")
    triage_model = ScriptedRuntime([call("transfer_to_billing", order=7), "Let me check."])
    triage = Agent(triage_model, name="triage", handoffs=[billing])
    # Closed, like a function's without parameters: a model held by a grammar writes `{}`.
    assert triage_model_tools(triage)["transfer_to_billing"] == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    result = triage.run_sync("Did I pay for order 7?")
    assert result.agent == "triage" and result.handoffs == []
    told = triage_model.requests[1].messages[-1].content
    assert told.startswith("Error: invalid arguments for transfer_to_billing")


class Order(BaseModel):
    order: int
    reason: str


def test_a_typed_input_is_the_tools_parameters_and_reaches_the_receiving_agent() -> None:
    refunds_model = ScriptedRuntime(["Refund approved."])
    refunds = Agent(refunds_model, name="refunds")
    triage_model = ScriptedRuntime([call("transfer_to_refunds", order=7, reason="broken")])
    triage = Agent(triage_model, name="triage", handoffs=[handoff(refunds, input_type=Order)])
    parameters = triage_model_tools(triage)["transfer_to_refunds"]
    assert list(parameters["properties"]) == ["order", "reason"]
    result = triage.run_sync("Order 7 arrived broken.")
    assert result.handoffs[0].input == {"order": 7, "reason": "broken"}
    told = refunds_model.requests[0].messages[-1].content
    assert told == 'Transferred to refunds. Input: {"order": 7, "reason": "broken"}'


def triage_model_tools(agent: Agent[Any]) -> dict[str, Any]:
    return {t.name: t.to_function()["function"]["parameters"] for t in agent.toolset}


def test_an_input_type_given_as_a_json_schema_checks_the_arguments_and_passes_them_on() -> None:
    schema = {
        "type": "object",
        "properties": {"order": {"type": "integer"}},
        "required": ["order"],
    }
    refunds_model = ScriptedRuntime(["Refund approved."])
    refunds = Agent(refunds_model, name="refunds")
    triage_model = ScriptedRuntime(
        [call("transfer_to_refunds", order="seven"), call("transfer_to_refunds", order=7)]
    )
    triage = Agent(triage_model, name="triage", handoffs=[handoff(refunds, input_type=schema)])
    assert triage_model_tools(triage)["transfer_to_refunds"] == schema
    result = triage.run_sync("Refund order 7.")
    assert "invalid arguments for transfer_to_refunds" in (result.tool_calls[0].error or "")
    assert result.agent == "refunds" and result.handoffs[0].input == {"order": 7}
    told = refunds_model.requests[0].messages[-1].content
    assert told == 'Transferred to refunds. Input: {"order": 7}'


def test_an_input_schema_that_is_not_an_object_is_refused() -> None:
    refunds = Agent(ScriptedRuntime([]), name="refunds")
    with pytest.raises(UserError, match="input_type: a JSON Schema must describe an object"):
        handoff(refunds, input_type={"type": "string"})


def test_the_receiving_agents_tools_read_the_input_from_their_context() -> None:
    seen: list[Any] = []

    @tool
    def decide(ctx: RunContext[None]) -> str:
        """Decide the refund."""
        seen.append(ctx.handoff.input if ctx.handoff else None)
        return "approved"

    refunds = Agent(ScriptedRuntime([call("decide"), "Approved."]), tools=[decide], name="refunds")
    triage = Agent(
        ScriptedRuntime([call("transfer_to_refunds", order=7, reason="broken")]),
        name="triage",
        handoffs=[handoff(refunds, input_type=Order)],
    )
    assert triage.run_sync("Refund 7.").output == "Approved."
    assert seen == [{"order": 7, "reason": "broken"}]


def test_invalid_typed_input_is_told_to_the_model_and_no_handoff_is_made() -> None:
    refunds = Agent(ScriptedRuntime([]), name="refunds")
    triage_model = ScriptedRuntime([call("transfer_to_refunds", order="seven"), "Sorry."])
    triage = Agent(triage_model, name="triage", handoffs=[handoff(refunds, input_type=Order)])
    result = triage.run_sync("Refund please.")
    assert result.output == "Sorry." and result.agent == "triage" and result.handoffs == []
    assert result.tool_calls[0].error is not None
    assert "invalid arguments for transfer_to_refunds" in result.tool_calls[0].error


def test_other_calls_of_the_step_run_and_the_first_transfer_wins() -> None:
    billing_model = ScriptedRuntime(["Billing here."])
    billing = Agent(billing_model, name="billing")
    shipping = Agent(ScriptedRuntime([]), name="shipping")
    triage_model = ScriptedRuntime(
        [
            ScriptedRuntime.calls(
                ("transfer_to_billing", {}),
                ("lookup", {"order": 7}),
                ("transfer_to_shipping", {}),
            )
        ]
    )
    triage = Agent(triage_model, tools=[lookup], name="triage", handoffs=[billing, shipping])
    result = triage.run_sync("Help with order 7.")
    assert result.output == "Billing here." and result.agent == "billing"
    outcomes = [(r.call.name, r.output, r.error) for r in result.tool_calls]
    assert outcomes == [
        ("transfer_to_billing", "Transferred to billing.", None),
        ("lookup", "order 7: shipped", None),
        (
            "transfer_to_shipping",
            None,
            "not transferred: this step already hands the conversation to billing",
        ),
    ]
    assert [h.target for h in result.handoffs] == ["billing"]
    # The receiving agent sees every result of the step that handed over.
    assert [m.role for m in billing_model.requests[0].messages[-4:]] == [
        "assistant",
        "tool",
        "tool",
        "tool",
    ]


def test_handoffs_chain_and_the_events_name_the_agent_in_force() -> None:
    refunds = Agent(ScriptedRuntime(["Refunded."]), name="refunds")
    billing = Agent(
        ScriptedRuntime([call("transfer_to_refunds")]), name="billing", handoffs=[refunds]
    )
    triage = Agent(
        ScriptedRuntime([call("transfer_to_billing")]), name="triage", handoffs=[billing]
    )

    async def main() -> list[str]:
        seen = []
        async for event in triage.stream("Refund order 7."):
            if isinstance(event, TextDelta):
                continue
            text = f"{event.path}: {event.kind}"
            if isinstance(event, HandedOff):
                text += f" {event.record.source}>{event.record.target}"
            if isinstance(event, RunFinished):
                assert event.result.agent == "refunds"
            seen.append(text)
        return seen

    assert anyio.run(main) == [
        "triage: step_started",
        "triage: tool_call_started",
        "triage: tool_call_finished",
        "triage: step_finished",
        "triage: handed_off triage>billing",
        "billing: step_started",
        "billing: tool_call_started",
        "billing: tool_call_finished",
        "billing: step_finished",
        "billing: handed_off billing>refunds",
        "refunds: step_started",
        "refunds: step_finished",
        "refunds: run_finished",
    ]


def test_iter_steps_through_a_handoff_as_run_does() -> None:
    billing = Agent(
        ScriptedRuntime([call("invoice", order=7), "Paid."]), tools=[invoice], name="billing"
    )
    triage = Agent(
        ScriptedRuntime([call("transfer_to_billing")]), name="triage", handoffs=[billing]
    )

    async def main() -> list[tuple[int, list[str]]]:
        steps = []
        async with triage.iter("Is order 7 paid?") as run:
            async for node in run:
                if isinstance(node, ToolResults):
                    steps.append((node.step, [r.call.name for r in node.records]))
        assert run.result.output == "Paid." and run.result.agent == "billing"
        return steps

    assert anyio.run(main) == [(1, ["transfer_to_billing"]), (2, ["invoice"])]


def test_hooks_of_the_agent_in_force_apply_and_hear_of_handoffs() -> None:
    heard: list[str] = []

    class Listen(RunHooks[Any]):
        def __init__(self, name: str) -> None:
            self.name = name

        async def before_model(self, ctx: RunContext[Any], request: ModelRequest) -> None:
            heard.append(f"{self.name} model")

        async def on_handoff(self, ctx: RunContext[Any], record: HandoffRecord) -> None:
            state = "made" if record.start is None else "returned" if record.returned else "taken"
            heard.append(f"{self.name} {state} {record.target}")

    billing = Agent(ScriptedRuntime(["Paid."]), name="billing", hooks=[Listen("billing")])
    triage = Agent(
        ScriptedRuntime([call("transfer_to_billing"), "Done."]),
        name="triage",
        hooks=[Listen("triage")],
        handoffs=[handoff(billing, returns=True)],
    )
    assert triage.run_sync("Paid?").output == "Done."
    assert heard == [
        "triage model",
        "triage made billing",
        "billing taken billing",
        "billing model",
        "triage returned billing",
        "triage model",
    ]


# -- returning ------------------------------------------------------------------------------


def test_a_handoff_that_returns_gives_the_answer_back_to_the_agent_that_handed_off() -> None:
    billing_model = ScriptedRuntime([call("invoice", order=7), "Order 7 is paid."])
    billing = Agent(billing_model, tools=[invoice], name="billing", instructions="Billing.")
    triage_model = ScriptedRuntime([call("transfer_to_billing"), "Yes, it is paid. Anything else?"])
    triage = Agent(
        triage_model,
        name="triage",
        instructions="Triage.",
        handoffs=[handoff(billing, returns=True)],
    )
    result = triage.run_sync("Did I pay for order 7?")
    assert result.output == "Yes, it is paid. Anything else?"
    assert result.agent == "triage"
    assert result.handoffs[0].returned
    # The agent that handed off sees the answer as the transfer's result, not billing's steps.
    back = triage_model.requests[1].messages
    assert roles(back) == ["system", "user", "assistant:transfer_to_billing", "tool"]
    assert back[0].content == "Triage." and back[-1].content == "Order 7 is paid."
    # The run's transcript keeps everything, in order.
    assert roles(result.messages) == [
        "system",
        "user",
        "assistant:transfer_to_billing",
        "tool",
        "assistant:invoice",
        "tool",
        "assistant",
        "assistant",
    ]
    record = result.handoffs[0]
    assert result.messages[record.start or 0].tool_calls[0].name == "invoice"
    assert result.messages[(record.end or 0) - 1].content == "Order 7 is paid."


def test_a_forced_tool_choice_holds_for_the_first_step_of_the_agent_handed_the_run() -> None:
    billing_model = ScriptedRuntime([call("invoice", order=7), "Order 7 is paid."])
    billing = Agent(billing_model, tools=[invoice], name="billing", tool_choice="required")
    triage_model = ScriptedRuntime([call("transfer_to_billing"), "It is paid."])
    triage = Agent(
        triage_model,
        name="triage",
        tool_choice="required",
        handoffs=[handoff(billing, returns=True)],
    )
    result = triage.run_sync("Did I pay for order 7?")
    assert result.output == "It is paid."
    # Billing's tools had not answered it yet: its first step is forced, as a run's first is.
    assert [r.tool_choice for r in billing_model.requests] == ["required", "auto"]
    # Back in triage, its transfer has its answer: triage may answer.
    assert [r.tool_choice for r in triage_model.requests] == ["required", "auto"]


def test_an_agent_handed_off_to_by_one_that_returns_answers_in_its_place() -> None:
    refunds = Agent(ScriptedRuntime(["Refunded 12.50."]), name="refunds")
    billing = Agent(
        ScriptedRuntime([call("transfer_to_refunds")]), name="billing", handoffs=[refunds]
    )
    triage_model = ScriptedRuntime([call("transfer_to_billing"), "All done."])
    triage = Agent(triage_model, name="triage", handoffs=[handoff(billing, returns=True)])
    result = triage.run_sync("Refund order 7.")
    assert result.output == "All done." and result.agent == "triage"
    assert triage_model.requests[1].messages[-1].content == "Refunded 12.50."
    assert [(h.target, h.returned) for h in result.handoffs] == [
        ("billing", True),
        ("refunds", False),
    ]


# -- input filters --------------------------------------------------------------------------


def conversation_then_transfer(target: str) -> ScriptedRuntime:
    return ScriptedRuntime([call("lookup", order=7), call(f"transfer_to_{target}")])


def test_drop_tool_traffic_keeps_the_conversation_and_the_transfer_only() -> None:
    refunds_model = ScriptedRuntime(["Refund sent."])
    refunds = Agent(refunds_model, name="refunds", instructions="Refunds.")
    triage = Agent(
        conversation_then_transfer("refunds"),
        tools=[lookup],
        name="triage",
        handoffs=[handoff(refunds, input_filter=drop_tool_traffic)],
    )
    result = triage.run_sync(
        "Refund order 7.", history=[Message.user("Hi"), Message.assistant("Hello!")]
    )
    seen = refunds_model.requests[0].messages
    assert roles(seen) == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant:transfer_to_refunds",
        "tool",
    ]
    assert seen[0].content == "Refunds."
    # The record keeps what the filter left out.
    assert len(result.messages) == 8 and result.tool_calls[0].output == "order 7: shipped"


def test_keep_last_keeps_the_last_messages_with_the_calls_their_results_answer() -> None:
    refunds_model = ScriptedRuntime(["Refund sent."])
    refunds = Agent(refunds_model, name="refunds")
    triage = Agent(
        conversation_then_transfer("refunds"),
        tools=[lookup],
        name="triage",
        handoffs=[handoff(refunds, input_filter=keep_last(1))],
    )
    triage.run_sync("Refund order 7.")
    # The last message is the transfer's result: its call comes with it.
    assert roles(refunds_model.requests[0].messages) == ["assistant:transfer_to_refunds", "tool"]


def test_a_function_filter_decides_what_the_receiving_agent_sees() -> None:
    refunds_model = ScriptedRuntime(["Refund sent."])
    refunds = Agent(refunds_model, name="refunds", instructions="Refunds.")
    given: list[list[str]] = []

    def users_only(messages: list[Message]) -> list[Message]:
        given.append([m.role for m in messages])
        return [m for m in messages if m.role == "user"]

    triage = Agent(
        conversation_then_transfer("refunds"),
        tools=[lookup],
        name="triage",
        instructions="Triage.",
        handoffs=[handoff(refunds, input_filter=users_only)],
    )
    triage.run_sync("Refund order 7.")
    assert given == [["user", "assistant", "tool", "assistant", "tool"]]  # no system message
    seen = refunds_model.requests[0].messages
    assert [(m.role, m.content) for m in seen] == [
        ("system", "Refunds."),
        ("user", "Refund order 7."),
    ]


def test_keep_last_refuses_a_count_below_one() -> None:
    with pytest.raises(UserError, match=r"keep_last: n must be an int >= 1 \(got 0\)"):
        keep_last(0)


# -- limits and bad settings ----------------------------------------------------------------


def test_past_max_handoffs_a_transfer_is_a_failed_call_and_the_run_goes_on() -> None:
    billing = Agent(ScriptedRuntime(["one", "two"]), name="billing")
    triage_model = ScriptedRuntime(
        [
            call("transfer_to_billing"),
            call("transfer_to_billing"),
            call("transfer_to_billing"),
            "I will answer myself.",
        ]
    )
    triage = Agent(
        triage_model,
        name="triage",
        handoffs=[handoff(billing, returns=True)],
        max_handoffs=2,
        repeat_limit=5,  # the same transfer again and again is not what is tested here
    )
    result = triage.run_sync("Bill me.")
    assert result.output == "I will answer myself." and result.agent == "triage"
    assert len(result.handoffs) == 2
    told = triage_model.requests[3].messages[-1].content
    assert told == (
        "Error: not transferred: the run made max_handoffs=2 handoffs; go on without billing"
    )


def test_unnamed_and_duplicate_targets_are_refused_by_name() -> None:
    unnamed = Agent(ScriptedRuntime([]))
    with pytest.raises(UserError, match="an agent handed off to needs a name"):
        Agent(ScriptedRuntime([]), name="triage", handoffs=[unnamed])
    billing = Agent(ScriptedRuntime([]), name="billing")
    with pytest.raises(UserError, match="an agent with handoffs needs a name"):
        Agent(ScriptedRuntime([]), handoffs=[billing])
    with pytest.raises(UserError, match="'billing' is there twice"):
        Agent(ScriptedRuntime([]), name="triage", handoffs=[billing, handoff(billing)])
    other = Agent(ScriptedRuntime([]), name="billing")
    refunds = Agent(ScriptedRuntime([]), name="refunds", handoffs=[other])
    with pytest.raises(UserError, match="two agents named 'billing' are reachable from 'triage'"):
        Agent(ScriptedRuntime([]), name="triage", handoffs=[billing, refunds])
    with pytest.raises(UserError, match=r"max_handoffs: must be >= 0 \(got -1\)"):
        Agent(ScriptedRuntime([]), name="triage", handoffs=[billing], max_handoffs=-1)
    with pytest.raises(UserError, match="expected an Agent or a Handoff"):
        Agent(ScriptedRuntime([]), name="triage", handoffs=["billing"])  # type: ignore[list-item]


# -- usage ----------------------------------------------------------------------------------


def test_usage_and_cost_add_up_over_every_agent_and_runtime() -> None:
    billing = Agent(
        named(
            ScriptedRuntime([calling("invoice", 100, 10, order=7), used("Paid.", 200, 20)]), "big"
        ),
        tools=[invoice],
        name="billing",
    )
    triage = Agent(
        named(
            ScriptedRuntime([calling("transfer_to_billing", 30, 3), used("Done.", 40, 4)]), "small"
        ),
        name="triage",
        handoffs=[handoff(billing, returns=True)],
        prices={"small": ModelPrice(1.0, 2.0), "big": ModelPrice(10.0, 20.0)},
    )
    result = triage.run_sync("Paid?")
    assert result.usage == Usage.of(370, 37)
    assert result.usage_by_model == {"small": Usage.of(70, 7), "big": Usage.of(300, 30)}
    expected = (70 * 1.0 + 7 * 2.0 + 300 * 10.0 + 30 * 20.0) / 1_000_000
    assert result.cost == pytest.approx(expected)


# -- pausing and resuming -------------------------------------------------------------------


def approval_agents() -> tuple[Agent[Any], ScriptedRuntime, ScriptedRuntime]:
    billing_model = ScriptedRuntime([call("refund", order=7), "Refunded order 7."])
    billing = Agent(billing_model, tools=[refund], name="billing", instructions="Billing.")
    triage_model = ScriptedRuntime([call("transfer_to_billing"), "Done: refunded."])
    triage = Agent(triage_model, name="triage", handoffs=[handoff(billing, returns=True)])
    return triage, billing_model, triage_model


def test_a_run_paused_inside_a_handed_off_agent_resumes_there() -> None:
    triage, billing_model, triage_model = approval_agents()
    paused = triage.run_sync("Refund order 7.")
    assert paused.stop_reason == "approval" and paused.agent == "billing"
    assert paused.state is not None
    state = RunState.from_json(paused.state.to_json())
    assert state.agent == "billing" and state.handoffs[0].start is not None
    result = triage.resume_sync(state, approve=[state.pending[0].id])
    assert result.output == "Done: refunded." and result.agent == "triage"
    assert billing_model.requests[1].messages[0].content == "Billing."
    assert billing_model.requests[1].messages[-1].content == "refunded 7"
    assert triage_model.requests[1].messages[-1].content == "Refunded order 7."


def test_resuming_checks_the_tools_of_the_agent_in_force() -> None:
    triage, _, _ = approval_agents()
    paused = triage.run_sync("Refund order 7.")
    assert paused.state is not None

    @tool(name="refund", requires_approval=True)
    def other_refund(order: int, amount: float) -> str:
        """Refund part of an order.

        Args:
            order: The order number.
            amount: Euros.
        """
        return "refunded"

    billing = Agent(ScriptedRuntime([]), tools=[other_refund], name="billing")
    changed = Agent(ScriptedRuntime([]), name="triage", handoffs=[handoff(billing, returns=True)])
    with pytest.raises(RunStateError, match="tool 'refund': its schema changed"):
        changed.resume_sync(paused.state, approve=[paused.state.pending[0].id])
    # billing is reachable, but through refunds: triage no longer hands off to it.
    billing = Agent(ScriptedRuntime([]), tools=[refund], name="billing")
    refunds = Agent(ScriptedRuntime([]), name="refunds", handoffs=[billing])
    rewired = Agent(ScriptedRuntime([]), name="triage", handoffs=[refunds])
    with pytest.raises(RunStateError, match="handoff 'triage' to 'billing': not one of"):
        rewired.resume_sync(paused.state, approve=[paused.state.pending[0].id])
    without = Agent(ScriptedRuntime([]), name="triage")
    with pytest.raises(RunStateError, match="the run handed off to billing; this agent has none"):
        without.resume_sync(paused.state, approve=[paused.state.pending[0].id])


def test_a_transfer_made_in_a_step_that_paused_is_taken_up_on_resume() -> None:
    billing_model = ScriptedRuntime(["Billing here."])
    billing = Agent(billing_model, name="billing")
    triage = Agent(
        ScriptedRuntime(
            [ScriptedRuntime.calls(("refund", {"order": 7}), ("transfer_to_billing", {}))]
        ),
        tools=[refund],
        name="triage",
        handoffs=[billing],
    )
    paused = triage.run_sync("Refund 7 and pass me on.")
    assert paused.state is not None and paused.agent == "triage"
    assert paused.state.handoffs[0].start is None  # made, not yet taken up
    result = triage.resume_sync(paused.state, approve=[paused.state.pending[0].id])
    assert result.output == "Billing here." and result.agent == "billing"
    assert billing_model.requests[0].messages[-2].content == "refunded 7"


def test_a_run_with_a_session_paused_inside_a_handed_off_agent_resumes_into_it() -> None:
    triage, _, _ = approval_agents()
    session = MemorySession("alice")
    paused = triage.run_sync("Refund order 7.", session=session)
    assert paused.state is not None
    result = triage.resume_sync(paused.state, approve=[paused.state.pending[0].id], session=session)
    assert result.output == "Done: refunded."
    entries = anyio.run(session.load)
    journaled = [e["record"] for e in entries if e["kind"] == "handoff"]
    assert [(r["start"] is not None, r["end"] is not None) for r in journaled] == [
        (False, False),  # made
        (True, False),  # taken up
        (True, True),  # returned from
    ]
    assert len({e["run"] for e in entries}) == 1  # one run, resumed into
    assert [m.content for m in anyio.run(history, session)][-1] == "Done: refunded."


def test_an_agent_used_as_a_tool_may_hand_off_and_its_events_say_so() -> None:
    billing = Agent(ScriptedRuntime(["Paid."]), name="billing")
    support = Agent(
        ScriptedRuntime([call("transfer_to_billing")]), name="support", handoffs=[billing]
    )
    main_agent = Agent(
        ScriptedRuntime([call("support", input="Did I pay?"), "You paid."]),
        tools=[support.as_tool(description="Customer support.")],
        name="main",
    )

    async def main() -> list[str]:
        return [
            f"{e.path}: {e.kind}"
            async for e in main_agent.stream("Did I pay?")
            if not isinstance(e, TextDelta)
        ]

    seen = anyio.run(main)
    assert seen[seen.index("main/support: handed_off") + 1] == "main/billing: step_started"
    assert seen[-1] == "main: run_finished"


def test_a_state_written_before_handoffs_existed_still_reads() -> None:
    old = {
        "version": 1,
        "messages": [{"role": "user", "content": "hi"}],
        "tool_calls": [],
        "pending": [],
        "steps": 0,
    }
    state = RunState.from_json(json.dumps(old))
    assert (state.agent, state.handoffs, state.handoff_usage) == (None, [], {})


# -- across processes -----------------------------------------------------------------------

WORKER = SUPPORT / "handoff_worker.py"


def worker(tmp_path: Path, mode: str, pause: str = "") -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), str(tmp_path), mode, str(tmp_path / "s.db"), pause]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    result: dict[str, Any] = json.loads(out) if out.strip() else {}
    return result


def lines(tmp_path: Path, name: str) -> list[str]:
    log = tmp_path / f"{name}.log"
    return log.read_text().splitlines() if log.exists() else []


FINAL = "triage: billing: charged 5, receipt for 7"
BILLING = "billing | You answer billing questions. | charge,receipt"
TRIAGE = "triage | You route questions. | transfer_to_billing"


@pytest.mark.subprocess
def test_a_run_paused_inside_a_handed_off_agent_resumes_in_another_process(
    tmp_path: Path,
) -> None:
    finish(worker(tmp_path, "start"))
    state = RunState.from_json((tmp_path / "state.json").read_text())
    assert state.agent == "billing" and [c.name for c in state.pending] == ["charge"]
    assert lines(tmp_path, "charge") == []
    result = finish(worker(tmp_path, "resume"))
    assert result["output"] == FINAL and result["agent"] == "triage"
    assert result["handoffs"][0]["input"] == {"order": 7} and result["handoffs"][0]["end"]
    assert lines(tmp_path, "charge") == ["5"] and lines(tmp_path, "receipt") == ["7"]
    # Before the pause: triage, then billing; after it, in the new process: billing, then triage.
    assert lines(tmp_path, "requests") == [TRIAGE, BILLING, BILLING, BILLING, TRIAGE]


@pytest.mark.subprocess
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize(
    ("pause", "requests_after"),
    [
        ("billing:1", [BILLING, BILLING, BILLING, TRIAGE]),  # just after the handoff
        ("billing:2", [BILLING, BILLING, TRIAGE]),  # after billing's charge
        ("triage:2", [TRIAGE]),  # after billing's answer went back to triage
    ],
)
def test_a_run_killed_after_a_handoff_continues_in_the_right_agent_without_rerunning_tools(
    tmp_path: Path, pause: str, requests_after: list[str]
) -> None:
    kill_when_paused(worker(tmp_path, "run", pause), tmp_path)
    before = lines(tmp_path, "requests")
    result = finish(worker(tmp_path, "continue"))
    assert result["output"] == FINAL and result["agent"] == "triage"
    assert lines(tmp_path, "charge") == ["5"] and lines(tmp_path, "receipt") == ["7"]
    assert lines(tmp_path, "requests")[len(before) :] == requests_after
    assert [(h["target"], h["end"] is not None) for h in result["handoffs"]] == [("billing", True)]
    # Each agent's calls count under its own model (100 and 10 prompt tokens a call), those
    # made before the crash included, as far as the journal holds them.
    usage = result["usage_by_model"]
    assert set(usage) == {"billing-model", "triage-model"}
    assert usage["billing-model"]["prompt_tokens"] % 100 == 0
    assert usage["triage-model"]["prompt_tokens"] == 10 * usage["triage-model"]["completion_tokens"]
    assert usage["triage-model"]["completion_tokens"] >= 2
    assert usage["billing-model"]["completion_tokens"] >= 3
    messages = [Message.model_validate(m) for m in result["messages"]]
    assert roles(messages) == [
        "system",
        "user",
        "assistant:transfer_to_billing",
        "tool",
        "assistant:charge",
        "tool",
        "assistant:receipt",
        "tool",
        "assistant",
        "assistant",
    ]


async def test_an_agent_on_an_openai_compatible_server_takes_over_from_a_scripted_one() -> None:
    # Agents on different runtimes: billing's model is a real HTTP server on loopback that
    # speaks OpenAI's chat completions (it calls the first tool offered, then answers).
    with LoopbackServer(openai_model) as server:
        billing = Agent(
            OpenAICompatible(server.url + "/v1", model="gpt-billing"),
            tools=[add],
            name="billing",
            instructions="You add up bills.",
        )
        triage = Agent(
            ScriptedRuntime([ScriptedRuntime.call("transfer_to_billing")]),
            name="triage",
            # Billing sees the question only: its model calls a tool when the last message
            # is not a tool's result.
            handoffs=[handoff(billing, input_filter=lambda m: [x for x in m if x.role == "user"])],
        )
        async with billing:
            result = await triage.run("What do 2 and 3 make?")
    assert (result.output, result.agent) == ("The result is 5.", "billing")
    assert [(c.call.name, c.output) for c in result.tool_calls] == [
        ("transfer_to_billing", "Transferred to billing."),
        ("add", "5"),
    ]
    sent = [seen.json for seen in server.requests]
    assert [body["model"] for body in sent] == ["gpt-billing", "gpt-billing"]
    assert sent[0]["messages"][0] == {"role": "system", "content": "You add up bills."}
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["add"]
    assert result.usage_by_model["gpt-billing"].total_tokens == 2 * USAGE["total_tokens"]
