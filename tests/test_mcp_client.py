"""MCP servers' tools in an agent: real servers, as child processes and over HTTP on 127.0.0.1,
written with the official SDK here (tests/support/mcp_servers) or by others (mcp-server-time,
PyPI)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest

from agentkit import Agent, ScriptedRuntime, Tool, ToolRetriesExhausted, ToolSource, tool
from agentkit.errors import ToolDefinitionError, UserError
from agentkit.mcp import MCPServerError, MCPServerHTTP, MCPServerStdio

from support.mcp_helpers import (
    LOWLEVEL_SERVER,
    children,
    group_members,
    running,
    sdk_http_server,
    sdk_stdio,
)

call = ScriptedRuntime.call
answer = ScriptedRuntime.answer


@tool
def shout(text: str) -> str:
    """Upper-case a text.

    Args:
        text: the text.
    """
    return text.upper()


def tool_messages(result: object) -> list[str]:
    return [m.content for m in result.messages if m.role == "tool"]  # type: ignore[attr-defined]


# -- tools like any others ----------------------------------------------------------------------


@pytest.mark.subprocess
async def test_a_stdio_servers_tools_join_the_agents_own_and_answer() -> None:
    runtime = ScriptedRuntime([call("add", a=2, b=3), call("shout", text="hi"), answer("5, HI")])
    async with Agent(runtime, tools=[shout, sdk_stdio()]) as agent:
        result = await agent.run("add 2 and 3")
    assert tool_messages(result) == ["5", "HI"]
    sent = {d.name: d for d in runtime.requests[0].tools or []}
    assert {"shout", "add", "pid", "weather"} <= set(sent)
    assert sent["add"].description == "Add two integers."
    assert sent["add"].parameters["required"] == ["a", "b"]


@pytest.mark.subprocess
async def test_env_and_cwd_reach_the_server_process(tmp_path: Path) -> None:
    async with sdk_stdio(env={"GREETING": "hello"}, cwd=tmp_path) as server:
        text = await server.call("environment", {"name": "GREETING"})
    assert text == f"GREETING=hello cwd={tmp_path}"


@pytest.mark.subprocess
async def test_the_agents_own_environment_is_not_passed_on() -> None:
    os.environ["AGENTKIT_TEST_SECRET"] = "s3cret"
    try:
        async with sdk_stdio() as server:
            text = await server.call("environment", {"name": "AGENTKIT_TEST_SECRET"})
    finally:
        del os.environ["AGENTKIT_TEST_SECRET"]
    assert text.startswith("AGENTKIT_TEST_SECRET= ")


@pytest.mark.subprocess
async def test_foreign_schemas_are_normalized_checked_and_reported() -> None:
    server = MCPServerStdio(sys.executable, [str(LOWLEVEL_SERVER)])
    async with server:
        double = server.tools["math_double"]
        assert double.original_name == "math.double"
        assert double.parameters_schema()["properties"]["x"]["type"] == "number"
        assert any("'float' is not a JSON type" in n for n in double.normalization_report)
        # The schema that is not JSON Schema is left out, and said why.
        assert "broken" not in server.tools
        assert server.problems == [
            "tool 'broken': $.parameters: $.properties.x.type: 5 is not valid under any of "
            "the schemas listed in the 'anyOf' keyword"
        ]
        # The call goes out under the server's own name.
        assert await double.function(x=2.5) == "5.0"  # type: ignore[misc]


@pytest.mark.subprocess
async def test_arguments_are_validated_before_the_call_leaves() -> None:
    runtime = ScriptedRuntime([call("add", a="two", b=3), answer("sorry")])
    async with Agent(runtime, tools=[sdk_stdio()]) as agent:
        result = await agent.run("add")
    # Our validator's words, not the server's: the call never went out.
    assert tool_messages(result) == [
        'Error: invalid arguments for add: a: "two" is not of type "integer". '
        'You sent: {"a":"two","b":3}'
    ]


@pytest.mark.subprocess
async def test_results_text_structured_and_images_described() -> None:
    async with sdk_stdio() as server:
        assert json.loads(await server.call("weather", {"city": "Oslo"})) == {
            "city": "Oslo",
            "celsius": 21,
        }
        assert await server.call("picture", {}) == (
            "a red pixel\n[image (image/png, 70 bytes) not shown: this model reads text only]"
        )


@pytest.mark.subprocess
async def test_an_is_error_result_is_a_tool_error_told_to_the_model() -> None:
    runtime = ScriptedRuntime([call("fail", message="no such city"), answer("it failed")])
    async with Agent(runtime, tools=[sdk_stdio()]) as agent:
        result = await agent.run("go")
    assert tool_messages(result) == ["Error: Error executing tool fail: no such city"]
    assert result.tool_calls[0].error == "Error executing tool fail: no such city"


@pytest.mark.subprocess
async def test_prefix_and_filter() -> None:
    server = sdk_stdio(prefix="calc", tool_filter={"add", "pid"})
    runtime = ScriptedRuntime([call("calc_add", a=1, b=2), answer("3")])
    async with Agent(runtime, tools=[server]) as agent:
        assert sorted(server.tools) == ["calc_add", "calc_pid"]
        result = await agent.run("go")
    assert tool_messages(result) == ["3"]
    only_add = sdk_stdio(tool_filter=lambda name: name.startswith("ad"))
    async with only_add:
        assert list(only_add.tools) == ["add"]


@pytest.mark.subprocess
async def test_two_sources_offering_one_name_is_a_clear_error() -> None:
    async with Agent(ScriptedRuntime([answer("x")]), tools=[sdk_stdio(), sdk_stdio()]) as agent:
        with pytest.raises(ToolDefinitionError, match="'add': another tool already has this name"):
            await agent.run("go")


@pytest.mark.subprocess
@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_the_tool_list_follows_the_servers_changes(protocol: str) -> None:
    # 2026: a subscriptions/listen event; 2025: a notifications/tools/list_changed message.
    server = sdk_stdio(protocol=protocol)
    runtime = ScriptedRuntime([call("multiply", a=6, b=7), answer("42")])
    async with Agent(runtime, tools=[server]) as agent:
        assert "multiply" not in server.tools
        assert await server.call("learn_multiply", {}) == "multiply is available now"
        with anyio.fail_after(10):
            while "multiply" not in server.tools:  # noqa: ASYNC110 - no event to wait on
                await anyio.sleep(0.02)
        result = await agent.run("6 times 7")
    assert "multiply" in [d.name for d in runtime.requests[0].tools or []]
    assert tool_messages(result) == ["42"]


@pytest.mark.subprocess
async def test_a_call_past_its_timeout_is_told_to_the_model() -> None:
    runtime = ScriptedRuntime([call("slow", seconds=30), call("add", a=1, b=1), answer("ok")])
    async with Agent(runtime, tools=[sdk_stdio(timeout=0.5)]) as agent:
        result = await agent.run("go")
    assert tool_messages(result) == ["Error: slow timed out after 0.5 s", "2"]


class Growing(ToolSource):
    """A tool source whose `grow` tool adds a `double` tool: no process, to watch the agent."""

    name = "growing"

    def __init__(self) -> None:
        self.started = self.stopped = 0
        self._tools: dict[str, Tool] = {}
        self._version = 0

    @property
    def tools(self) -> dict[str, Tool]:
        return self._tools

    @property
    def version(self) -> int:
        return self._version

    async def start(self) -> None:
        self.started += 1

        @tool
        def grow() -> str:
            """Add the double tool."""

            @tool
            def double(x: int) -> int:
                """Double a number.

                Args:
                    x: the number.
                """
                return 2 * x

            self._tools["double"] = double
            self._version += 1
            return "grown"

        self._tools = {"grow": grow}
        self._version += 1

    async def stop(self) -> None:
        self.stopped += 1
        self._tools = {}


async def test_each_step_sends_the_tools_the_sources_offer_then() -> None:
    source = Growing()
    runtime = ScriptedRuntime([call("grow"), call("double", x=21), answer("42")])
    result = await Agent(runtime, tools=[shout, source]).run("go")
    assert tool_messages(result) == ["grown", "42"]
    sent = [[d.name for d in r.tools or []] for r in runtime.requests]
    assert sent == [["shout", "grow"], ["shout", "grow", "double"], ["shout", "grow", "double"]]
    assert (source.started, source.stopped) == (1, 1)


# -- Streamable HTTP ----------------------------------------------------------------------------


@pytest.mark.subprocess
async def test_an_http_servers_tools_answer_in_an_agent() -> None:
    with sdk_http_server() as (url, _):
        runtime = ScriptedRuntime(
            [call("add", a=20, b=22), call("fail", message="bad"), answer("42")]
        )
        async with Agent(runtime, tools=[MCPServerHTTP(url)]) as agent:
            result = await agent.run("go")
    assert tool_messages(result) == ["42", "Error: Error executing tool fail: bad"]


@pytest.mark.subprocess
async def test_an_http_server_that_dies_is_told_then_said_to_be_down() -> None:
    with sdk_http_server() as (url, process):

        @tool
        def kill_server() -> str:
            """Kill the MCP server."""
            process.kill()
            process.wait(10)
            return "killed"

        add = call("add", a=1, b=2)
        runtime = ScriptedRuntime([add, call("kill_server"), add, add, answer("down")])
        async with Agent(runtime, tools=[kill_server, MCPServerHTTP(url)]) as agent:
            result = await agent.run("go")
    told = tool_messages(result)
    assert told[:2] == ["3", "killed"]
    assert "stopped during the call (Connection closed)" in told[2]
    assert "is down (Connection closed) and did not restart: ConnectError: " in told[3]


async def test_an_http_server_that_is_not_there_is_a_clear_error() -> None:
    from support.mcp_helpers import free_port

    server = MCPServerHTTP(f"http://127.0.0.1:{free_port()}/mcp", connect_timeout=5)
    with pytest.raises(MCPServerError, match=r"MCP server '127\.0\.0\.1:\d+': did not start: "):
        async with server:
            pass


# -- a server nobody here wrote -----------------------------------------------------------------


@pytest.mark.subprocess
async def test_mcp_server_time_from_pypi() -> None:
    server = MCPServerStdio(sys.executable, ["-m", "mcp_server_time", "--local-timezone", "UTC"])
    runtime = ScriptedRuntime([call("get_current_time", timezone="Europe/Paris"), answer("ok")])
    async with Agent(runtime, tools=[server]) as agent:
        assert set(server.tools) == {"get_current_time", "convert_time"}
        result = await agent.run("time in Paris?")
    data = json.loads(tool_messages(result)[0])
    assert data["timezone"] == "Europe/Paris"
    assert data["datetime"][:4].isdigit()


# -- lifecycle ----------------------------------------------------------------------------------


@pytest.mark.subprocess
async def test_the_server_starts_and_stops_with_the_agent() -> None:
    before = children()
    server = sdk_stdio()
    async with Agent(ScriptedRuntime([answer("x")]), tools=[server]):
        pid = int(await server.call("pid", {}))
        assert running(pid)
        assert children() - before == {pid}
    assert not running(pid)
    assert group_members(pid) == []
    assert children() - before == set()


@pytest.mark.subprocess
async def test_an_agent_not_entered_starts_the_server_for_each_run() -> None:
    before = children()
    runtime = ScriptedRuntime([call("pid"), answer("a"), call("pid"), answer("b")])
    agent = Agent(runtime, tools=[sdk_stdio()])
    first = await agent.run("pid?")
    second = await agent.run("pid?")
    pids = [int(tool_messages(first)[0]), int(tool_messages(second)[0])]
    assert pids[0] != pids[1]
    assert not any(running(pid) for pid in pids)
    assert children() - before == set()


@pytest.mark.subprocess
async def test_concurrent_runs_need_the_agent_entered() -> None:
    runtime = ScriptedRuntime([call("slow", seconds=1), answer("a"), call("pid"), answer("b")])
    agent = Agent(runtime, tools=[sdk_stdio()])
    errors: list[Exception] = []

    async def second() -> None:
        await anyio.sleep(0.5)
        with anyio.fail_after(30):
            while not agent.toolset.running:  # noqa: ASYNC110 - no event to wait on
                await anyio.sleep(0.05)
        try:
            await agent.run("pid?")
        except UserError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.run, "slow")
        tg.start_soon(second)
    assert str(errors[0]) == (
        "concurrent runs of an agent with tool sources (MCP servers) need the agent entered "
        "first: `async with agent:`"
    )
    # Entered, the same runs share the server.
    runtime = ScriptedRuntime([call("pid"), call("pid"), answer("a"), answer("b")])
    outputs: list[str] = []

    async def run(agent: Agent, prompt: str) -> None:
        outputs.extend(tool_messages(await agent.run(prompt)))

    async with Agent(runtime, tools=[sdk_stdio()]) as agent, anyio.create_task_group() as tg:
        tg.start_soon(run, agent, "a")
        tg.start_soon(run, agent, "b")
    assert len(outputs) == 2 and outputs[0] == outputs[1]


@pytest.mark.subprocess
async def test_a_server_that_cannot_start_is_a_clear_error_and_leaves_nothing() -> None:
    before = children()
    agent = Agent(
        ScriptedRuntime([answer("x")]),
        tools=[MCPServerStdio("no-such-mcp-server-command", ["--x"])],
    )
    with pytest.raises(MCPServerError) as raised:
        async with agent:
            pass
    assert str(raised.value).startswith(
        "MCP server 'no-such-mcp-server-command': did not start: FileNotFoundError: "
    )
    assert children() - before == set()


@pytest.mark.subprocess
async def test_a_server_dying_mid_call_is_a_tool_error_then_it_is_restarted() -> None:
    before = children()
    server = sdk_stdio()
    runtime = ScriptedRuntime([call("pid"), call("crash"), call("pid"), answer("done")])
    async with Agent(runtime, tools=[server]) as agent:
        result = await agent.run("go")
        first, told, second = tool_messages(result)
        assert told == (
            f"Error: MCP server {server.name!r} stopped during the call (Connection closed); "
            "it is restarted for the next call"
        )
        assert int(first) != int(second)
        assert not running(int(first))
        assert running(int(second))
    assert not running(int(second))
    assert children() - before == set()


@pytest.mark.subprocess
async def test_a_server_killed_mid_run_is_told_then_restarted_and_nothing_outlives_it() -> None:
    before = children()
    server = sdk_stdio()
    pids: list[int] = []

    @tool
    async def kill_server() -> str:
        """Kill the MCP server."""
        pids.append(int(await server.call("pid", {})))
        os.kill(pids[0], signal.SIGKILL)
        return "killed"

    runtime = ScriptedRuntime(
        [call("kill_server"), call("add", a=1, b=2), call("add", a=1, b=2), answer("3")]
    )
    async with Agent(runtime, tools=[kill_server, server]) as agent:
        result = await agent.run("go")
        after = int(await server.call("pid", {}))
    assert tool_messages(result)[0] == "killed"
    assert tool_messages(result)[1].startswith("Error: MCP server ")
    assert "stopped during the call" in tool_messages(result)[1]
    assert tool_messages(result)[2] == "3"
    assert after != pids[0]
    assert not running(pids[0]) and not running(after)
    assert group_members(after) == []
    assert children() - before == set()


@pytest.mark.subprocess
async def test_a_server_that_stays_down_stops_the_run_with_a_clear_error(tmp_path: Path) -> None:
    before = children()
    marker = tmp_path / "down"
    server = sdk_stdio(env={"DOWN_MARKER": str(marker)})
    runtime = ScriptedRuntime([call("crash"), call("add", a=1, b=1), call("add", a=2, b=2)])
    async with Agent(runtime, tools=[server], max_tool_retries=1) as agent:
        with pytest.raises(ToolRetriesExhausted) as raised:
            await agent.run("go")
    assert "is down (Connection closed) and did not restart: " in str(raised.value)
    told = tool_messages(raised.value.run)
    assert "stopped during the call" in told[0]
    assert "is down" in told[1]
    assert children() - before == set()


@pytest.mark.subprocess
async def test_a_cancelled_run_leaves_no_process() -> None:
    before = children()
    runtime = ScriptedRuntime([call("slow", seconds=30), answer("never")])
    agent = Agent(runtime, tools=[sdk_stdio()], deadline=1.0)
    with pytest.raises(Exception, match="deadline"):
        await agent.run("go")
    assert children() - before == set()
