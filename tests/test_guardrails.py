"""Guardrails: input checks alongside (or before) the first model call, output checks on the
answer, tool checks before and after a call, and agents used as guardrails."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from agentkit import (
    Agent,
    FunctionRuntime,
    GuardrailResult,
    GuardrailTripped,
    InputGuardrail,
    ModelRequest,
    OutputGuardrail,
    RunContext,
    RunFinished,
    ScriptedRuntime,
    TextDelta,
    ToolCall,
    ToolGuardrail,
    Usage,
    UserError,
    Verdict,
    tool,
)

from support.helpers import add


def no_homework(ctx: RunContext[Any], text: str) -> GuardrailResult:
    if "homework" in text:
        return GuardrailResult.trip("asks for homework")
    return GuardrailResult.allow()


class SlowModel:
    """A model that starts answering, then takes its time; it notes whether it was cancelled."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.seen: list[str] = []

    async def __call__(self, request: ModelRequest) -> str:
        self.seen.append("started")
        self.started.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            self.seen.append("cancelled")
            raise
        self.seen.append("finished")
        return "too late"


# -- input guardrails -------------------------------------------------------------------------


async def test_a_tripped_input_guardrail_cancels_the_model_call_under_way() -> None:
    model = SlowModel()

    async def checks_once_the_model_is_busy(ctx: RunContext[Any], text: str) -> GuardrailResult:
        await model.started.wait()  # the model call is under way: the two run together
        return no_homework(ctx, text)

    agent = Agent(
        FunctionRuntime(model), guardrails=[InputGuardrail(checks_once_the_model_is_busy)]
    )
    with anyio.fail_after(10), pytest.raises(GuardrailTripped) as caught:
        await agent.run("Do my homework")
    assert model.seen == ["started", "cancelled"]
    error = caught.value
    assert (error.guardrail, error.kind, error.output) == (
        "checks_once_the_model_is_busy",
        "input",
        "asks for homework",
    )
    assert str(error) == (
        "guardrail 'checks_once_the_model_is_busy' tripped on the input: asks for homework"
    )
    assert error.run.stop_reason == "guardrail"
    assert [(m.role, m.content) for m in error.run.messages] == [("user", "Do my homework")]


async def test_a_passing_input_guardrail_runs_alongside_the_model_call() -> None:
    model_started, check_started = anyio.Event(), anyio.Event()
    checked: list[str] = []

    async def model(request: ModelRequest) -> str:
        model_started.set()
        await check_started.wait()  # only possible if the check runs at the same time
        return "Hello!"

    async def polite(ctx: RunContext[Any], text: str) -> GuardrailResult:
        check_started.set()
        await model_started.wait()
        checked.append(text)
        return GuardrailResult.allow()

    runtime = FunctionRuntime(model)
    agent = Agent(runtime, instructions="Be brief.", guardrails=[InputGuardrail(polite)])
    with anyio.fail_after(10):
        result = await agent.run("Hi there")
    assert result.output == "Hello!" and result.stop_reason == "answer"
    assert checked == ["Hi there"]  # the user's input, not the instructions
    assert len(runtime.requests) == 1


async def test_a_blocking_input_guardrail_checks_before_the_model_is_called() -> None:
    runtime = ScriptedRuntime(["Sure."])
    agent = Agent(runtime, guardrails=[InputGuardrail(no_homework, blocking=True)])
    with pytest.raises(GuardrailTripped) as caught:
        await agent.run("Do my homework")
    assert runtime.requests == []  # the model never saw it
    assert caught.value.run.messages[-1].content == "Do my homework"
    assert (await agent.run("Tell me a joke")).output == "Sure."


async def test_input_guardrails_check_each_run_once_and_not_again_on_resume() -> None:
    checked: list[str] = []

    def counts(ctx: RunContext[Any], text: str) -> GuardrailResult:
        checked.append(text)
        return GuardrailResult.allow()

    @tool(requires_approval=True)
    def pay(amount: int) -> str:
        """Pay.

        Args:
            amount: How much.
        """
        return f"paid {amount}"

    runtime = ScriptedRuntime(
        [ScriptedRuntime.call("add", a=1, b=2), ScriptedRuntime.call("pay", amount=3), "done"]
    )
    agent = Agent(runtime, tools=[add, pay], guardrails=[InputGuardrail(counts)])
    paused = await agent.run("Add, then pay")
    assert paused.stop_reason == "approval" and paused.state is not None
    assert checked == ["Add, then pay"]  # once, though the run made two model calls
    resumed = await agent.resume(paused.state, approve=[paused.pending[0].id])
    assert resumed.output == "done"
    assert checked == ["Add, then pay"]
    runtime.add("again")
    await agent.run("Next question", history=resumed.messages)
    assert checked == ["Add, then pay", "Next question"]


# -- output guardrails ------------------------------------------------------------------------


class Weather(BaseModel):
    city: str
    celsius: float


async def test_an_output_guardrail_sees_the_typed_answer_and_its_trip_keeps_it() -> None:
    seen: list[Weather] = []

    async def plausible(ctx: RunContext[Any], weather: Weather) -> GuardrailResult:
        seen.append(weather)
        if weather.celsius > 60:
            return GuardrailResult.trip(f"{weather.celsius} °C is not weather")
        return GuardrailResult.allow()

    runtime = ScriptedRuntime(['{"city": "Oslo", "celsius": 4}', '{"city": "Oslo", "celsius": 99}'])
    agent = Agent(runtime, output_type=Weather, guardrails=[OutputGuardrail(plausible)])
    assert (await agent.run("Weather in Oslo?")).output == Weather(city="Oslo", celsius=4)
    with pytest.raises(GuardrailTripped) as caught:
        await agent.run("Weather in Oslo?")
    assert seen == [Weather(city="Oslo", celsius=4), Weather(city="Oslo", celsius=99)]
    error = caught.value
    assert (error.kind, error.output) == ("output", "99.0 °C is not weather")
    assert error.run.stop_reason == "guardrail"
    assert error.run.output == Weather(city="Oslo", celsius=99)  # the answer, typed
    assert error.run.messages[-1].content == '{"city": "Oslo", "celsius": 99}'


# -- tool guardrails --------------------------------------------------------------------------


def make_delete(deleted: list[str]) -> Any:
    @tool
    def delete(path: str, force: bool = False) -> str:
        """Delete a file.

        Args:
            path: The file.
            force: Even if it is read-only.
        """
        deleted.append(path)
        return f"deleted {path}"

    return delete


async def test_a_tool_guardrail_rejection_tells_the_model_and_the_run_goes_on() -> None:
    deleted: list[str] = []
    seen: list[dict[str, Any]] = []

    def no_system_files(
        ctx: RunContext[Any], call: ToolCall, arguments: dict[str, Any]
    ) -> GuardrailResult:
        seen.append(arguments)
        if arguments["path"].startswith("/etc"):
            return GuardrailResult.reject("system files stay")
        return GuardrailResult.allow()

    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.call("delete", path="/etc/hosts"),
            ScriptedRuntime.call("delete", path="/etc/passwd"),
            ScriptedRuntime.call("delete", path="a.txt"),
            "cleaned up",
        ]
    )
    guardrail = ToolGuardrail(no_system_files, tools=["delete"])
    # With no retries allowed, a rejection counted as a failure would stop the run.
    agent = Agent(runtime, tools=[make_delete(deleted)], max_tool_retries=0, guardrails=[guardrail])
    result = await agent.run("Clean up")
    assert result.output == "cleaned up"
    assert deleted == ["a.txt"]
    assert seen[0] == {"path": "/etc/hosts", "force": False}  # validated, defaults filled
    told = runtime.requests[1].messages[-1]
    assert (told.role, told.content) == ("tool", "Error: system files stay")
    assert [r.error for r in result.tool_calls] == ["system files stay", "system files stay", None]


async def test_a_tool_guardrail_trip_stops_the_run_with_every_call_answered() -> None:
    deleted: list[str] = []

    async def no_wildcards(
        ctx: RunContext[Any], call: ToolCall, arguments: dict[str, Any]
    ) -> GuardrailResult:
        if "*" in arguments.get("path", ""):
            return GuardrailResult.trip("wildcard")
        return GuardrailResult.allow()

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("add", {"a": 1, "b": 1}), ("delete", {"path": "/*"}))]
    )
    agent = Agent(
        runtime, tools=[add, make_delete(deleted)], guardrails=[ToolGuardrail(no_wildcards)]
    )
    with pytest.raises(GuardrailTripped) as caught:
        await agent.run("Wipe it")
    assert deleted == []
    error = caught.value
    assert (error.kind, error.tool, error.output) == ("tool", "delete", "wildcard")
    assert str(error) == "guardrail 'no_wildcards' tripped on a call of 'delete': wildcard"
    run = error.run
    assert run.stop_reason == "guardrail"
    calls = [c.id for m in run.messages for c in m.tool_calls]
    answered = [m.tool_call_id for m in run.messages if m.role == "tool"]
    assert len(calls) == 2 and sorted(answered) == sorted(calls)


async def test_a_guardrail_on_results_replaces_what_the_model_reads() -> None:
    @tool
    def read_config() -> str:
        """Read the configuration."""
        return "user=bob password=hunter2"

    def no_secrets(ctx: RunContext[Any], call: ToolCall, output: str) -> GuardrailResult:
        if "password" in output:
            return GuardrailResult.reject("[withheld: the result held a password]")
        return GuardrailResult.allow()

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("read_config", {}), ("add", {"a": 2, "b": 2})), "done"]
    )
    agent = Agent(
        runtime,
        tools=[read_config, add],
        guardrails=[ToolGuardrail(after=no_secrets, tools=["read_config"])],
    )
    result = await agent.run("What is in the config?")
    told = [m.content for m in runtime.requests[1].messages if m.role == "tool"]
    assert told == ["[withheld: the result held a password]", "4"]
    assert result.tool_calls[0].output == "[withheld: the result held a password]"
    assert "hunter2" not in str([m.content for m in result.messages])


# -- agents as guardrails ---------------------------------------------------------------------


class JudgeRuntime(ScriptedRuntime):
    model = "judge"


async def test_an_agent_as_a_guardrail_trips_with_its_verdict_and_its_usage_counts() -> None:
    spent = Usage(prompt_tokens=7, completion_tokens=3, total_tokens=10)
    judge_runtime = JudgeRuntime(
        [
            ScriptedRuntime.answer('{"allowed": true, "reason": "a question"}', spent),
            ScriptedRuntime.answer('{"allowed": false, "reason": "asks for homework"}', spent),
        ]
    )
    judge = Agent(judge_runtime, output_type=Verdict, instructions="Is this homework?")
    own = Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)
    runtime = ScriptedRuntime([ScriptedRuntime.answer("Paris.", own), "An essay."])
    agent = Agent(runtime, guardrails=[InputGuardrail(judge, name="homework")])

    result = await agent.run("Capital of France?")
    assert result.output == "Paris."
    assert result.usage_by_model == {"scripted": own, "judge": spent}
    assert judge_runtime.requests[0].messages[-1].content == "Capital of France?"

    with pytest.raises(GuardrailTripped) as caught:
        await agent.run("Do my homework")  # the model answers first: the trip still stops it
    error = caught.value
    assert error.output == Verdict(allowed=False, reason="asks for homework")
    assert str(error) == "guardrail 'homework' tripped on the input: asks for homework"
    assert error.run.usage_by_model["judge"] == spent


async def test_an_agent_guarding_tools_rejects_calls_with_its_reason() -> None:
    judge = Agent(
        JudgeRuntime(['{"allowed": false, "reason": "too large a sum"}']), output_type=Verdict
    )
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=10**9, b=1), "I may not."])
    agent = Agent(runtime, tools=[add], guardrails=[ToolGuardrail(judge)])
    result = await agent.run("Add a billion and one")
    assert result.output == "I may not."
    assert result.tool_calls[0].error == "too large a sum"


# -- streaming and stepping -------------------------------------------------------------------


async def test_a_streamed_run_shows_nothing_of_an_answer_whose_input_tripped() -> None:
    agent = Agent(ScriptedRuntime(["Here is your essay"]), guardrails=[InputGuardrail(no_homework)])
    events: list[object] = []
    with pytest.raises(GuardrailTripped) as caught:
        async with contextlib.aclosing(agent.stream("Do my homework")) as stream:
            async for event in stream:
                events.append(event)
    assert not any(isinstance(e, (TextDelta, RunFinished)) for e in events)
    assert caught.value.run.stop_reason == "guardrail"

    agent = Agent(ScriptedRuntime(["A joke"]), guardrails=[InputGuardrail(no_homework)])
    text = ""
    async for event in agent.stream("Tell me a joke"):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, RunFinished):
            assert event.result.output == text == "A joke"


async def test_a_stepped_run_raises_the_trip_from_its_loop() -> None:
    def short(ctx: RunContext[Any], answer: str) -> GuardrailResult:
        return GuardrailResult.trip("too long") if len(answer) > 10 else GuardrailResult.allow()

    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=2, b=3), "The sum of 2 and 3 is 5"])
    agent = Agent(runtime, tools=[add], guardrails=[OutputGuardrail(short)])
    nodes: list[str] = []
    with pytest.raises(GuardrailTripped) as caught:
        async with agent.iter("2 + 3?") as run:
            async for node in run:
                nodes.append(type(node).__name__)
    assert nodes == ["ModelResponse", "ToolResults", "ModelResponse"]
    assert caught.value.run.output == "The sum of 2 and 3 is 5"


# -- misuse -----------------------------------------------------------------------------------


async def test_guardrails_that_cannot_work_are_refused_by_name() -> None:
    runtime = ScriptedRuntime(["ok"])
    with pytest.raises(UserError, match=r"guardrails\[0\]: must be an InputGuardrail"):
        Agent(runtime, guardrails=[no_homework])  # type: ignore[list-item]
    with pytest.raises(UserError, match=r"needs output_type=Verdict.*got output_type=None"):
        InputGuardrail(Agent(runtime))
    with pytest.raises(UserError, match=r"InputGuardrail\.blocking: must be True or False"):
        InputGuardrail(no_homework, blocking="yes")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="ToolGuardrail: give a check"):
        ToolGuardrail()

    def allow(ctx: RunContext[Any], call: ToolCall, arguments: dict[str, Any]) -> GuardrailResult:
        return GuardrailResult.allow()

    with pytest.raises(UserError, match=r"ToolGuardrail.tools: .* \(got 'add'\)"):
        ToolGuardrail(allow, tools="add")
    with pytest.raises(
        UserError, match=r"guardrails\[1\].tools: no tool named 'ad' \(tools: add\)"
    ):
        Agent(
            runtime,
            tools=[add],
            guardrails=[InputGuardrail(no_homework), ToolGuardrail(allow, tools=["ad"])],
        )

    def forgets(ctx: RunContext[Any], text: str) -> GuardrailResult:
        return None  # type: ignore[return-value]

    agent = Agent(runtime, guardrails=[InputGuardrail(forgets, blocking=True)])
    with pytest.raises(UserError, match=r"input guardrail 'forgets': .* it returned None"):
        await agent.run("Hi")
