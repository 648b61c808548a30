"""The run as an object: hooks that observe and shape a run, the run context tools and hooks
receive, and stepping a run with `agent.iter`."""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentkit import (
    Agent,
    Generation,
    Message,
    ModelRequest,
    ModelResponse,
    RunContext,
    RunHooks,
    RunResult,
    RunStopped,
    ScriptedRuntime,
    StopRun,
    ToolCall,
    ToolCallRecord,
    ToolResults,
    Usage,
    tool,
)
from agentkit.cli import main as cli_main

from support.helpers import add


def _tool_messages(result: RunResult[Any]) -> list[str]:
    return [m.content for m in result.messages if m.role == "tool"]


# -- hooks ------------------------------------------------------------------------------------


class Recorder(RunHooks[Any]):
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_run_start(self, ctx: RunContext[Any]) -> None:
        self.seen.append(f"start {ctx.step}")

    async def before_model(self, ctx: RunContext[Any], request: ModelRequest) -> None:
        self.seen.append(f"model {ctx.step} {len(request.messages)}")

    async def after_model(self, ctx: RunContext[Any], generation: Generation) -> None:
        self.seen.append(f"answered {ctx.step} {len(generation.tool_calls)}")

    async def before_tool(
        self, ctx: RunContext[Any], call: ToolCall, arguments: dict[str, Any]
    ) -> None:
        self.seen.append(f"before {call.name} {arguments}")

    async def on_tools_start(self, ctx: RunContext[Any], calls: Sequence[ToolCall]) -> None:
        self.seen.append(f"starting {[c.name for c in calls]}")

    async def after_tool(
        self, ctx: RunContext[Any], record: ToolCallRecord, error: BaseException | None
    ) -> None:
        self.seen.append(f"after {record.call.name} {record.output} {type(error).__name__}")

    async def on_step_end(
        self, ctx: RunContext[Any], step: int, records: Sequence[ToolCallRecord]
    ) -> None:
        self.seen.append(f"step {step} {len(records)}")

    async def on_answer(self, ctx: RunContext[Any], result: RunResult[Any]) -> None:
        self.seen.append(f"answer {result.output}")

    async def on_run_end(
        self, ctx: RunContext[Any], result: RunResult[Any] | None, error: BaseException | None
    ) -> None:
        self.seen.append(f"end {result.stop_reason if result else type(error).__name__}")


async def test_hooks_hear_every_point_of_a_run_in_order() -> None:
    recorder = Recorder()
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=2, b=3), "5"])
    result = await Agent(runtime, tools=[add], hooks=[recorder]).run("2 + 3?")
    assert result.output == "5"
    assert recorder.seen == [
        "start 0",
        "model 1 1",
        "answered 1 1",
        "before add {'a': 2, 'b': 3}",
        "starting ['add']",
        "after add 5 NoneType",
        "step 1 1",
        "model 2 3",
        "answered 2 0",
        "answer 5",
        "end answer",
    ]


async def test_a_hook_may_change_the_request_the_model_gets() -> None:
    class Terse(RunHooks[Any]):
        async def before_model(self, ctx: RunContext[Any], request: ModelRequest) -> ModelRequest:
            return request.model_copy(update={"max_tokens": 7})

    runtime = ScriptedRuntime(["fine"])
    await Agent(runtime, hooks=[Terse()]).run("hi")
    assert runtime.requests[0].max_tokens == 7


async def test_a_hook_that_vetoes_a_call_tells_the_model_and_the_run_goes_on() -> None:
    ran: list[str] = []

    @tool
    def delete(path: str) -> str:
        """Delete a file.

        Args:
            path: Which.
        """
        ran.append(path)
        return "deleted"

    class Guard(RunHooks[Any]):
        async def before_tool(
            self, ctx: RunContext[Any], call: ToolCall, arguments: dict[str, Any]
        ) -> str | None:
            if arguments["path"].startswith("/etc"):
                return f"not allowed: {arguments['path']} is a system file"
            return None

    runtime = ScriptedRuntime(
        [
            # Vetoed more often than the retry budget allows: a veto is no failure.
            ScriptedRuntime.calls(("delete", {"path": "/etc/passwd"}), ("delete", {"path": "x"})),
            ScriptedRuntime.call("delete", path="/etc/hosts"),
            ScriptedRuntime.call("delete", path="/etc/shadow"),
            "I may not delete system files; x is gone.",
        ]
    )
    agent = Agent(runtime, tools=[delete], hooks=[Guard()], max_tool_retries=1)
    result = await agent.run("clean up")
    assert ran == ["x"]
    assert result.stop_reason == "answer"
    assert _tool_messages(result) == [
        "Error: not allowed: /etc/passwd is a system file",
        "deleted",
        "Error: not allowed: /etc/hosts is a system file",
        "Error: not allowed: /etc/shadow is a system file",
    ]
    # The model saw the veto as the call's result before its next step.
    assert runtime.requests[1].messages[-2].content.startswith("Error: not allowed")


async def test_a_hook_that_stops_the_run_raises_a_typed_error_with_the_partial_run() -> None:
    class Budget(RunHooks[Any]):
        async def after_tool(
            self, ctx: RunContext[Any], record: ToolCallRecord, error: BaseException | None
        ) -> None:
            if record.output == "5":
                raise StopRun("the result is all we needed")

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("add", {"a": 2, "b": 3}), ("add", {"a": 1, "b": 1})), "never"]
    )
    with pytest.raises(RunStopped, match="the result is all we needed") as caught:
        await Agent(runtime, tools=[add], hooks=[Budget()]).run("add")
    partial = caught.value.run
    assert partial is not None and partial.stop_reason == "stopped"
    assert partial.steps == 1 and len(runtime.requests) == 1
    # Every call in the transcript is answered.
    tool_ids = [m.tool_call_id for m in partial.messages if m.role == "tool"]
    assert tool_ids == [c.id for c in partial.messages[-3].tool_calls]


async def test_a_hook_that_stops_before_a_model_call_stops_with_nothing_sent() -> None:
    class Closed(RunHooks[Any]):
        async def before_model(self, ctx: RunContext[Any], request: ModelRequest) -> None:
            raise StopRun("closed for today")

    runtime = ScriptedRuntime(["never"])
    with pytest.raises(RunStopped) as caught:
        await Agent(runtime, hooks=[Closed()]).run("hi")
    assert runtime.requests == [] and caught.value.reason == "closed for today"


# -- run context --------------------------------------------------------------------------


@dataclass
class Shop:
    name: str
    orders: list[str]


@tool
def order(item: str, ctx: RunContext[Shop]) -> str:
    """Order an item.

    Args:
        item: What to order.
    """
    ctx.deps.orders.append(item)
    return json.dumps(
        {
            "shop": ctx.deps.name,
            "call": ctx.tool_call_id,
            "tool": ctx.tool_name,
            "step": ctx.step,
            "tokens": ctx.usage.total_tokens,
            "messages": len(ctx.messages),
            "run": ctx.run_id,
        }
    )


@tool
async def order_async(item: str, ctx: RunContext[Shop]) -> str:
    """Order an item, asynchronously.

    Args:
        item: What to order.
    """
    ctx.deps.orders.append(item)
    return f"{ctx.deps.name}:{ctx.tool_call_id}"


def test_the_context_is_in_neither_tool_shape_nor_the_validation() -> None:
    for shape in (order.to_legacy(), order.to_function()["function"]):
        assert list(shape["parameters"]["properties"]) == ["item"]
        assert shape["parameters"]["required"] == ["item"]
    assert order.check({"item": "tea"}) == {"item": "tea"}
    with pytest.raises(Exception, match="ctx"):
        order.check({"item": "tea", "ctx": "forged"})


def test_agentkit_schema_leaves_the_context_out(tmp_path: Path) -> None:
    module = tmp_path / "shop_tools.py"
    module.write_text(
        textwrap.dedent(
            '''
            from agentkit import RunContext, tool

            @tool
            def order(item: str, ctx: RunContext[dict]) -> str:
                """Order an item.

                Args:
                    item: What to order.
                """
                return item
            '''
        )
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["schema", "--tools", str(module)]) == 0
    printed = json.loads(out.getvalue())
    assert list(printed[0]["function"]["parameters"]["properties"]) == ["item"]
    assert "ctx" not in out.getvalue()


async def test_a_tool_with_a_run_context_gets_the_deps_its_call_id_and_the_usage() -> None:
    shop = Shop("corner", [])
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.call("order", item="tea"),
            ScriptedRuntime.call("order_async", item="milk"),
            "ordered",
        ]
    )
    result = await Agent(runtime, tools=[order, order_async]).run("shop", deps=shop)
    assert shop.orders == ["tea", "milk"]
    seen = json.loads(result.tool_calls[0].output or "")
    first = result.tool_calls[0].call
    assert seen["shop"] == "corner" and seen["call"] == first.id and seen["tool"] == "order"
    assert seen["step"] == 1 and seen["messages"] == 2  # the prompt and the call
    assert seen["run"].startswith("run_")
    assert result.tool_calls[1].output == f"corner:{result.tool_calls[1].call.id}"


async def test_the_usage_a_tool_sees_is_the_run_s_so_far() -> None:
    seen: list[int] = []

    @tool
    def peek(ctx: RunContext[None]) -> str:
        """Look at the usage."""
        seen.append(ctx.usage.total_tokens)
        return "ok"

    turn = ScriptedRuntime.call("peek").model_copy(
        update={"usage": Usage(prompt_tokens=10, completion_tokens=2, total_tokens=12)}
    )
    result = await Agent(ScriptedRuntime([turn, "done"]), tools=[peek]).run("go")
    assert seen == [12]
    assert result.tool_calls[0].output == "ok"


async def test_deps_given_to_a_resumed_run_reach_its_tools() -> None:
    @tool(requires_approval=True)
    def pay(amount: int, ctx: RunContext[str]) -> str:
        """Pay.

        Args:
            amount: Euros.
        """
        return f"paid {amount} from {ctx.deps}"

    runtime = ScriptedRuntime([ScriptedRuntime.call("pay", amount=3), "done"])
    agent = Agent(runtime, tools=[pay])
    paused = await agent.run("pay", deps="the paused process")
    assert paused.stop_reason == "approval" and paused.state is not None
    # Deps are not part of the state.
    assert "paused process" not in paused.state.to_json()
    resumed = await agent.resume(
        paused.state, approve=[paused.pending[0].id], deps="the resuming process"
    )
    assert resumed.tool_calls[0].output == "paid 3 from the resuming process"


def test_a_tool_may_take_only_one_context() -> None:
    def twice(a: RunContext[None], b: RunContext[None]) -> str:
        """Twice."""
        return ""

    with pytest.raises(Exception, match="only one parameter may take the RunContext"):
        tool(twice)


# -- stepping -----------------------------------------------------------------------------


async def test_iter_steps_a_run_and_ends_with_the_result_run_would_give() -> None:
    def script() -> ScriptedRuntime:
        return ScriptedRuntime(
            [ScriptedRuntime.call("add", a=2, b=3), ScriptedRuntime.call("add", a=5, b=1), "6"]
        )

    nodes: list[str] = []
    agent = Agent(script(), tools=[add])
    async with agent.iter("2 + 3 + 1?") as run:
        async for node in run:
            if isinstance(node, ModelResponse):
                nodes.append(f"model {node.step} {len(node.generation.tool_calls)}")
            else:
                assert isinstance(node, ToolResults)
                nodes.append(f"tools {node.step} {[r.output for r in node.records]}")
    assert nodes == ["model 1 1", "tools 1 ['5']", "model 2 1", "tools 2 ['6']", "model 3 0"]
    direct = await Agent(script(), tools=[add]).run("2 + 3 + 1?")
    stepped = run.result
    assert stepped.output == direct.output == "6"
    assert stepped.stop_reason == direct.stop_reason == "answer"
    assert [m.content for m in stepped.messages] == [m.content for m in direct.messages]
    assert stepped.steps == direct.steps == 3


async def test_leaving_iter_early_stops_the_run_between_steps() -> None:
    runtime = ScriptedRuntime(
        [ScriptedRuntime.call("add", a=2, b=3), ScriptedRuntime.call("add", a=5, b=1), "6"]
    )
    async with Agent(runtime, tools=[add]).iter("2 + 3 + 1?") as run:
        async for node in run:
            if isinstance(node, ToolResults):
                break
    result = run.result
    assert result.stop_reason == "stopped"
    assert result.steps == 1 and len(runtime.requests) == 1  # no model call after the stop
    assert [m.role for m in result.messages] == ["user", "assistant", "tool"]


async def test_a_run_stopped_at_a_model_response_leaves_its_calls_unmade() -> None:
    ran: list[int] = []

    @tool
    def act() -> str:
        """Act."""
        ran.append(1)
        return "acted"

    runtime = ScriptedRuntime([ScriptedRuntime.call("act"), "done"])
    async with Agent(runtime, tools=[act]).iter("go") as run:
        async for node in run:
            assert isinstance(node, ModelResponse)
            break
    assert ran == [] and run.result.stop_reason == "stopped"
    assert [m.role for m in run.result.messages] == ["user"]


async def test_an_error_of_a_stepped_run_is_raised_from_the_loop() -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=1, b=1)] * 3)
    agent = Agent(runtime, tools=[add], max_steps=2, repeat_limit=10)
    seen: list[int] = []
    with pytest.raises(Exception, match="max_steps=2"):
        async with agent.iter("loop") as run:
            async for node in run:
                seen.append(node.step)
    assert seen == [1, 1, 2, 2]


@pytest.mark.model
async def test_iter_steps_a_run_on_the_embedded_model_and_stops_early(model_path: Path) -> None:
    from agentkit.runtimes.llama_cpp import LlamaCpp

    runtime = LlamaCpp(model_path)
    try:
        agent = Agent(runtime, tools=[add], max_tokens=60)
        kinds: list[str] = []
        async with agent.iter("What is 37 + 41? Use the add tool.") as run:
            async for node in run:
                kinds.append(type(node).__name__)
                if isinstance(node, ToolResults):
                    assert node.records and node.records[0].call.name == "add"
                    break
        # The profile makes the first step call a tool: the model calls, the tool answers.
        assert kinds == ["ModelResponse", "ToolResults"]
        assert run.result.stop_reason == "stopped" and run.result.steps == 1
        assert run.result.messages[-1].role == "tool"
    finally:
        await runtime.aclose()


def test_messages_a_context_gives_are_read_only() -> None:
    class View:
        run_id = "run_x"
        deps = None
        steps = 1
        usage = Generation().usage
        messages = (Message.user("hi"),)

    ctx: RunContext[None] = RunContext(View(), "call_1", "add")
    assert isinstance(ctx.messages, tuple) and ctx.messages[0].content == "hi"
    assert "call_1" in repr(ctx)


def test_a_tool_taking_a_context_is_refused_by_the_mcp_server(tmp_path: Path) -> None:
    from agentkit.errors import ToolDefinitionError
    from agentkit.mcp.server import build_server

    with pytest.raises(ToolDefinitionError, match="tool 'order': takes a RunContext"):
        build_server([order, add])
    module = tmp_path / "ctx_tools.py"
    module.write_text(
        "from agentkit import RunContext, tool\n\n\n"
        "@tool\n"
        "def who(ctx: RunContext[None]) -> str:\n"
        '    """Who calls."""\n'
        "    return ctx.run_id\n"
    )
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli_main(["mcp", "--tools", str(module)])
    assert status != 0
    assert "tool 'who': takes a RunContext (ctx)" in err.getvalue()
