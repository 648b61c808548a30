"""Agents as tools (`Agent.as_tool`): what the sub-agent is asked, what the calling run gets
back, and how its usage, events, record and failures reach the calling run."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, Field

from agentkit import (
    Agent,
    DeadlineExceeded,
    Event,
    Generation,
    ModelPrice,
    ModelRequest,
    ModelResponse,
    RunContext,
    RunFinished,
    RunHooks,
    RunResult,
    RunState,
    ScriptedRuntime,
    ServerError,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallStarted,
    ToolResults,
    ToolRetriesExhausted,
    Usage,
    UserError,
    tool,
)
from agentkit.runtimes import FunctionRuntime


class ModelRuntime(ScriptedRuntime):
    """A scripted runtime that says which model it serves (what usage and prices key on)."""

    def __init__(self, model: str, turns: Iterable[Any]) -> None:
        super().__init__(turns)
        self.model = model


def billing_agent(*answers: Any, **settings: Any) -> tuple[Agent, ScriptedRuntime]:
    runtime = ScriptedRuntime(answers)
    return Agent(runtime, name="billing", instructions="You handle billing.", **settings), runtime


def tool_message(request: ModelRequest) -> str:
    """The content of the last tool-role message of a request."""
    return [m.content for m in request.messages if m.role == "tool"][-1]


# -- what the sub-agent is asked, and what the calling run gets back ------------------------


def test_the_sub_agent_is_asked_what_the_calling_model_wrote_and_its_answer_is_the_result() -> None:
    billing, billing_model = billing_agent("Order 7 was refunded.")
    runtime = ScriptedRuntime(
        [ScriptedRuntime.call("billing", input="Refund order 7, it arrived broken."), "Done."]
    )
    triage = Agent(runtime, tools=[billing.as_tool(description="Billing questions.")])
    result = triage.run_sync("My order 7 arrived broken, refund it.")
    asked = billing_model.requests[0].messages
    assert [(m.role, m.content) for m in asked] == [
        ("system", "You handle billing."),
        ("user", "Refund order 7, it arrived broken."),
    ]
    assert tool_message(runtime.requests[1]) == "Order 7 was refunded."
    assert result.output == "Done."
    assert result.tool_calls[0].output == "Order 7 was refunded."


def test_the_tool_takes_one_described_string_and_is_named_after_the_agent() -> None:
    billing, _ = billing_agent()
    made = billing.as_tool(description="Billing questions: refunds, invoices.")
    definition = made.to_function()["function"]
    assert definition["name"] == "billing"
    assert definition["description"] == "Billing questions: refunds, invoices."
    parameters = definition["parameters"]
    assert list(parameters["properties"]) == ["input"]
    assert parameters["properties"]["input"]["type"] == "string"
    assert "sees nothing else" in parameters["properties"]["input"]["description"]
    assert parameters["required"] == ["input"]
    renamed = billing.as_tool("ask_billing", description="Billing.", timeout=5)
    assert renamed.name == "ask_billing" and renamed.timeout == 5


class Refund(BaseModel):
    order: int = Field(description="The order number.")
    reason: str = Field(description="Why the customer wants their money back.")


@dataclass
class Decision:
    approved: bool
    amount: float


def test_typed_input_is_the_tools_parameters_and_typed_output_comes_back_as_json() -> None:
    refunds_model = ScriptedRuntime(['{"approved": true, "amount": 12.5}'])
    refunds = Agent(refunds_model, name="refunds", output_type=Decision)
    made = refunds.as_tool(description="Decide a refund.", input_type=Refund)
    parameters = made.to_function()["function"]["parameters"]
    assert parameters["required"] == ["order", "reason"]
    assert parameters["properties"]["order"] == {
        "type": "integer",
        "description": "The order number.",
    }
    runtime = ScriptedRuntime(
        [ScriptedRuntime.call("refunds", order=7, reason="broken"), "Refunded 12.50."]
    )
    result = Agent(runtime, tools=[made]).run_sync("Refund order 7.")
    assert refunds_model.requests[0].messages[-1].content == '{"order":7,"reason":"broken"}'
    assert tool_message(runtime.requests[1]) == '{"approved": true, "amount": 12.5}'
    sub = result.tool_calls[0].run
    assert sub is not None and sub.output == Decision(approved=True, amount=12.5)


def test_arguments_that_do_not_fit_the_input_type_are_told_to_the_calling_model() -> None:
    refunds_model = ScriptedRuntime(['{"approved": false, "amount": 0}'])
    refunds = Agent(refunds_model, name="refunds", output_type=Decision)
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.call("refunds", order="seven"),
            ScriptedRuntime.call("refunds", order=7, reason="late"),
            "No refund.",
        ]
    )
    made = refunds.as_tool(description="Decide a refund.", input_type=Refund)
    result = Agent(runtime, tools=[made]).run_sync("Refund order seven.")
    told = tool_message(runtime.requests[1])
    assert told.startswith("Error: invalid arguments for refunds:")
    assert "order" in told and "reason" in told
    assert len(refunds_model.requests) == 1  # the invalid call never reached the sub-agent
    assert result.output == "No refund."


@dataclass
class Shop:
    name: str


def test_the_sub_agents_tools_get_the_calling_runs_deps() -> None:
    @tool
    def balance(ctx: RunContext[Shop]) -> str:
        """The shop's balance."""
        return f"{ctx.deps.name}: 120 EUR"

    accounts_model = ScriptedRuntime([ScriptedRuntime.call("balance"), "120 EUR."])
    accounts = Agent(accounts_model, tools=[balance], name="accounts")
    runtime = ScriptedRuntime([ScriptedRuntime.call("accounts", input="Balance?"), "120 EUR."])
    result = Agent(runtime, tools=[accounts.as_tool(description="Accounts.")]).run_sync(
        "What is our balance?", deps=Shop("the corner shop")
    )
    sub = result.tool_calls[0].run
    assert sub is not None and sub.tool_calls[0].output == "the corner shop: 120 EUR"


# -- usage and cost --------------------------------------------------------------------------


def test_the_sub_runs_usage_and_cost_add_to_the_calling_runs() -> None:
    small = ModelRuntime("small", [ScriptedRuntime.answer("Refunded.", Usage.of(10, 5))])
    billing = Agent(small, name="billing")
    big = ModelRuntime(
        "big",
        [
            Generation(
                tool_calls=[ToolCall(name="billing", arguments={"input": "Refund 7."})],
                usage=Usage.of(100, 10),
            ),
            ScriptedRuntime.answer("Done.", Usage.of(100, 10)),
        ],
    )
    prices = {"big": ModelPrice(1.0, 2.0), "small": ModelPrice(3.0, 4.0)}
    triage = Agent(big, tools=[billing.as_tool(description="Billing.")], prices=prices)
    result = triage.run_sync("Refund order 7.")
    assert result.usage == Usage.of(200, 20)  # the agent's own calls
    assert result.usage_by_model == {"big": Usage.of(200, 20), "small": Usage.of(10, 5)}
    assert result.cost == pytest.approx((200 * 1 + 20 * 2 + 10 * 3 + 5 * 4) / 1e6)
    sub = result.tool_calls[0].run
    assert sub is not None and sub.usage_by_model == {"small": Usage.of(10, 5)}


# -- events ----------------------------------------------------------------------------------


async def collect(agent: Agent, prompt: str) -> list[Event]:
    return [event async for event in agent.stream(prompt)]


def test_the_sub_agents_events_come_between_its_calls_start_and_finish_with_its_path() -> None:
    billing, _ = billing_agent("Refund sent.")
    runtime = ScriptedRuntime([ScriptedRuntime.call("billing", input="Refund 7."), "Done."])
    triage = Agent(runtime, tools=[billing.as_tool(description="Billing.")], name="triage")
    events = anyio.run(collect, triage, "Refund order 7.")
    shown = [(type(e).__name__, e.path) for e in events if not isinstance(e, TextDelta)]
    assert shown == [
        ("StepStarted", "triage"),
        ("ToolCallStarted", "triage"),
        ("StepStarted", "triage/billing"),
        ("StepFinished", "triage/billing"),
        ("ToolCallFinished", "triage"),
        ("StepFinished", "triage"),
        ("StepStarted", "triage"),
        ("StepFinished", "triage"),
        ("RunFinished", "triage"),
    ]
    sub_text = "".join(
        e.text for e in events if isinstance(e, TextDelta) and e.path == "triage/billing"
    )
    assert sub_text == "Refund sent."
    started = next(i for i, e in enumerate(events) if isinstance(e, ToolCallStarted))
    finished = next(i for i, e in enumerate(events) if isinstance(e, ToolCallFinished))
    inner = [i for i, e in enumerate(events) if e.path == "triage/billing"]
    assert started < min(inner) and max(inner) < finished
    finish = events[finished]
    assert isinstance(finish, ToolCallFinished) and finish.record.run is not None
    assert finish.record.run.output == "Refund sent."
    assert sum(isinstance(e, RunFinished) for e in events) == 1


def test_paths_name_unnamed_agents_agent_and_their_tools_name() -> None:
    helper = Agent(ScriptedRuntime(["Sure."]))
    runtime = ScriptedRuntime([ScriptedRuntime.call("helper", input="Help."), "Ok."])
    parent = Agent(runtime, tools=[helper.as_tool("helper", description="Helps.")])
    events = anyio.run(collect, parent, "Help me.")
    paths = [e.path for e in events if isinstance(e, StepStarted)]
    assert paths == ["agent", "agent/helper", "agent"]


def test_a_sub_agent_of_a_sub_agent_has_a_path_of_three_names() -> None:
    ledger = Agent(ScriptedRuntime(["Paid."]), name="ledger")
    billing_model = ScriptedRuntime([ScriptedRuntime.call("ledger", input="Paid?"), "Paid."])
    billing = Agent(billing_model, name="billing", tools=[ledger.as_tool(description="Ledger.")])
    runtime = ScriptedRuntime([ScriptedRuntime.call("billing", input="Paid?"), "Paid."])
    triage = Agent(runtime, name="triage", tools=[billing.as_tool(description="Billing.")])
    events = anyio.run(collect, triage, "Did I pay?")
    finished = [e.path for e in events if isinstance(e, StepFinished)]
    assert finished == [
        "triage/billing/ledger",
        "triage/billing",
        "triage/billing",
        "triage",
        "triage",
    ]
    result = events[-1]
    assert isinstance(result, RunFinished)
    middle = result.result.tool_calls[0].run
    assert middle is not None and middle.tool_calls[0].run is not None
    assert middle.tool_calls[0].run.output == "Paid."


# -- the record ------------------------------------------------------------------------------


def test_the_sub_runs_whole_record_is_kept_and_round_trips_through_json() -> None:
    @tool
    def invoice(order: int) -> str:
        """An order's invoice.

        Args:
            order: The order number.
        """
        return f"invoice {order}: 12.50 EUR"

    billing_model = ScriptedRuntime([ScriptedRuntime.call("invoice", order=7), "12.50 EUR."])
    billing = Agent(billing_model, tools=[invoice], name="billing")
    runtime = ScriptedRuntime([ScriptedRuntime.call("billing", input="Invoice of 7?"), "12.50."])
    result = Agent(runtime, tools=[billing.as_tool(description="Billing.")]).run_sync("7?")
    sub = result.tool_calls[0].run
    assert sub is not None
    assert sub.steps == 2 and sub.output == "12.50 EUR."
    assert sub.tool_calls[0].output == "invoice 7: 12.50 EUR"
    assert [m.role for m in sub.messages] == ["user", "assistant", "tool", "assistant"]
    again = RunResult.model_validate_json(result.model_dump_json())
    assert again.tool_calls[0].run == sub
    assert again == result


def test_the_sub_runs_record_survives_a_pause_for_approval_and_its_resume() -> None:
    @tool(requires_approval=True)
    def refund(order: int) -> str:
        """Refund an order.

        Args:
            order: The order number.
        """
        return f"refunded {order}"

    billing, _ = billing_agent("Order 7 cost 12.50 EUR.")
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("billing", {"input": "Price of 7?"}), ("refund", {"order": 7})),
            "Refunded.",
        ]
    )
    triage = Agent(runtime, tools=[billing.as_tool(description="Billing."), refund])
    paused = triage.run_sync("Refund order 7.")
    assert paused.stop_reason == "approval" and paused.state is not None
    state = RunState.from_json(paused.state.to_json())
    held = state.tool_calls[0].run
    assert held is not None and held.output == "Order 7 cost 12.50 EUR."
    result = triage.resume_sync(state, approve=[paused.pending[0].id])
    assert result.output == "Refunded."
    sub = result.tool_calls[0].run
    assert sub is not None and sub.output == "Order 7 cost 12.50 EUR."
    assert result.tool_calls[1].output == "refunded 7"


def test_stepping_through_a_run_shows_the_sub_run_in_the_steps_results() -> None:
    billing, _ = billing_agent("Refund sent.")
    runtime = ScriptedRuntime([ScriptedRuntime.call("billing", input="Refund 7."), "Done."])
    triage = Agent(runtime, tools=[billing.as_tool(description="Billing.")])
    nodes: list[ModelResponse | ToolResults] = []

    async def main() -> RunResult:
        async with triage.iter("Refund order 7.") as run:
            async for node in run:
                nodes.append(node)
        return run.result

    result = anyio.run(main)
    assert [type(n).__name__ for n in nodes] == ["ModelResponse", "ToolResults", "ModelResponse"]
    step = nodes[1]
    assert isinstance(step, ToolResults)
    sub = step.records[0].run
    assert sub is not None and sub.output == "Refund sent."
    assert result.output == "Done."


# -- hooks -----------------------------------------------------------------------------------


class Seen(RunHooks[Any]):
    def __init__(self) -> None:
        self.before: list[tuple[str, dict[str, Any]]] = []
        self.after: list[ToolCallRecord] = []
        self.ended: list[str] = []

    async def before_tool(
        self, ctx: RunContext[Any], call: ToolCall, arguments: dict[str, Any]
    ) -> str | None:
        self.before.append((call.name, arguments))
        return None

    async def after_tool(
        self, ctx: RunContext[Any], record: ToolCallRecord, error: BaseException | None
    ) -> None:
        self.after.append(record)

    async def on_run_end(
        self, ctx: RunContext[Any], result: RunResult[Any] | None, error: BaseException | None
    ) -> None:
        self.ended.append(result.output if result is not None else repr(error))


def test_the_calling_runs_hooks_see_the_call_and_the_sub_agents_hooks_see_its_run() -> None:
    inner, outer = Seen(), Seen()
    billing, _ = billing_agent("Refund sent.", hooks=[inner])
    runtime = ScriptedRuntime([ScriptedRuntime.call("billing", input="Refund 7."), "Done."])
    triage = Agent(runtime, tools=[billing.as_tool(description="Billing.")], hooks=[outer])
    triage.run_sync("Refund order 7.")
    assert outer.before == [("billing", {"input": "Refund 7."})]
    assert [r.output for r in outer.after] == ["Refund sent."]
    assert outer.after[0].run is not None and outer.after[0].run.output == "Refund sent."
    assert inner.ended == ["Refund sent."] and outer.ended == ["Done."]


# -- failures --------------------------------------------------------------------------------


@tool
def lookup(order: int) -> str:
    """Look an order up.

    Args:
        order: The order number.
    """
    return "shipped"


def test_a_failed_sub_run_is_told_to_the_calling_model_and_the_run_goes_on() -> None:
    looping = ModelRuntime("small", [ScriptedRuntime.call("lookup", order=7)])
    billing = Agent(looping, tools=[lookup], name="billing", max_steps=1)
    runtime = ScriptedRuntime(
        [ScriptedRuntime.call("billing", input="Where is 7?"), "I could not find out."]
    )
    triage = Agent(runtime, tools=[billing.as_tool(description="Billing.")])
    result = triage.run_sync("Where is order 7?")
    told = tool_message(runtime.requests[1])
    assert told == "Error: MaxStepsExceeded: no answer after max_steps=1 steps"
    assert result.output == "I could not find out."
    record = result.tool_calls[0]
    assert record.error == "MaxStepsExceeded: no answer after max_steps=1 steps"
    assert record.run is not None and record.run.stop_reason == "max_steps"
    assert record.run.tool_calls[0].output == "shipped"  # as far as it got


def test_a_failed_sub_runs_usage_still_counts() -> None:
    looping = ModelRuntime(
        "small",
        [
            Generation(
                tool_calls=[ToolCall(name="lookup", arguments={"order": 7})],
                usage=Usage.of(30, 3),
            )
        ],
    )
    billing = Agent(looping, tools=[lookup], name="billing", max_steps=1)
    runtime = ModelRuntime("big", [ScriptedRuntime.call("billing", input="7?"), "Unknown."])
    result = Agent(runtime, tools=[billing.as_tool(description="Billing.")]).run_sync("7?")
    assert result.tool_calls[0].error is not None
    assert result.usage_by_model["small"] == Usage.of(30, 3)


def test_a_sub_agents_model_error_is_a_failure_of_the_call_and_counts_against_retries() -> None:
    failing = ScriptedRuntime(
        [ServerError("model unavailable", status=503), ServerError("still down", status=503)]
    )
    billing = Agent(failing, name="billing")
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.call("billing", input="Refund 7."),
            ScriptedRuntime.call("billing", input="Refund order 7."),
        ]
    )
    triage = Agent(runtime, tools=[billing.as_tool(description="Billing.")], max_tool_retries=1)
    with pytest.raises(ToolRetriesExhausted) as caught:
        triage.run_sync("Refund order 7.")
    told = "Error: ServerError: [HTTP 503] model unavailable"
    assert tool_message(runtime.requests[1]) == told
    partial = caught.value.run
    assert partial is not None
    assert [r.error for r in partial.tool_calls] == [
        "ServerError: [HTTP 503] model unavailable",
        "ServerError: [HTTP 503] still down",
    ]
    sub = partial.tool_calls[0].run
    assert sub is not None and sub.stop_reason == "stopped"
    assert [m.role for m in sub.messages] == ["user"]  # it got no further than the question


def test_the_sub_agents_own_deadline_is_a_failure_of_the_call() -> None:
    async def slow(request: ModelRequest) -> str:
        await anyio.sleep(30)
        return "late"

    billing = Agent(FunctionRuntime(slow), name="billing", deadline=0.05)
    runtime = ScriptedRuntime([ScriptedRuntime.call("billing", input="Refund 7."), "Too slow."])
    result = Agent(runtime, tools=[billing.as_tool(description="Billing.")]).run_sync("7")
    assert tool_message(runtime.requests[1]).startswith("Error: DeadlineExceeded:")
    assert result.output == "Too slow."
    sub = result.tool_calls[0].run
    assert sub is not None and sub.stop_reason == "deadline"


def test_the_calling_runs_deadline_stops_it_and_is_not_told_to_its_model() -> None:
    async def slow(request: ModelRequest) -> str:
        await anyio.sleep(30)
        return "late"

    billing = Agent(FunctionRuntime(slow), name="billing")
    runtime = ScriptedRuntime([ScriptedRuntime.call("billing", input="Refund 7."), "never"])
    triage = Agent(runtime, tools=[billing.as_tool(description="Billing.")], deadline=0.2)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        triage.run_sync("Refund order 7.")
    assert time.monotonic() - started < 10
    assert len(runtime.requests) == 1  # the model was never asked again
    partial = caught.value.run
    assert partial is not None and partial.stop_reason == "deadline"
    record = partial.tool_calls[0]
    assert record.error is not None and record.error.startswith("cancelled")
    assert record.run is not None and [m.role for m in record.run.messages] == ["user"]


def test_cancelling_the_calling_run_cancels_the_sub_run() -> None:
    sub_asked = anyio.Event()

    async def slow(request: ModelRequest) -> str:
        sub_asked.set()
        await anyio.sleep(30)
        return "late"

    billing = Agent(FunctionRuntime(slow), name="billing")
    runtime = ScriptedRuntime([ScriptedRuntime.call("billing", input="Refund 7."), "never"])
    triage = Agent(runtime, tools=[billing.as_tool(description="Billing.")])
    transcript: list[Any] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: triage.run("Refund order 7.", transcript=transcript))
            await sub_asked.wait()
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert len(runtime.requests) == 1
    assert [m.role for m in transcript] == ["user", "assistant", "tool"]
    assert transcript[-1].content.startswith("Error: cancelled")


# -- approval --------------------------------------------------------------------------------


@tool(requires_approval=True)
def refund(order: int) -> str:
    """Refund an order.

    Args:
        order: The order number.
    """
    return f"refunded {order}"


def test_an_agent_whose_tools_may_ask_for_approval_is_refused_as_a_tool() -> None:
    billing = Agent(ScriptedRuntime(), tools=[lookup, refund], name="billing")
    with pytest.raises(UserError, match="cannot pause for approval, and its tools refund may"):
        billing.as_tool(description="Billing.")


def test_a_sub_run_that_pauses_for_approval_anyway_is_a_failure_that_names_the_calls() -> None:
    billing_model = ScriptedRuntime([ScriptedRuntime.call("refund", order=7)])
    billing = Agent(billing_model, name="billing")
    made = billing.as_tool(description="Billing.")
    billing.toolset.add(refund)  # added after: the check at as_tool did not see it
    runtime = ScriptedRuntime([ScriptedRuntime.call("billing", input="Refund 7."), "Cannot."])
    result = Agent(runtime, tools=[made]).run_sync("Refund order 7.")
    told = tool_message(runtime.requests[1])
    assert told.startswith("Error: UserError: billing stopped to wait for approval of refund (")
    sub = result.tool_calls[0].run
    assert sub is not None and sub.stop_reason == "approval"
    assert [p.name for p in sub.pending] == ["refund"]
    assert result.output == "Cannot."


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent_name", "arguments", "message"),
    [
        (None, {"description": "Helps."}, "name: required for an agent without a name"),
        ("billing", {"name": "ask billing", "description": "B."}, "name: must be 1 to 64 "),
        ("billing", {"description": "  "}, "description: must say what the agent does"),
        (
            "billing",
            {"description": "B.", "input_type": int},
            "input_type: must be a pydantic model, a dataclass or a TypedDict.*got int",
        ),
    ],
)
def test_bad_arguments_to_as_tool_are_refused_by_name(
    agent_name: str | None, arguments: dict[str, Any], message: str
) -> None:
    agent = Agent(ScriptedRuntime(), name=agent_name)
    with pytest.raises(UserError, match=message):
        agent.as_tool(**arguments)
