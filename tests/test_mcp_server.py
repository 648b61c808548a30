"""agentkit tools served over MCP, checked with the official SDK's client: `agentkit mcp` over
stdio and `agentkit serve --mcp` over Streamable HTTP, real processes and sockets."""

from __future__ import annotations

import sys

import httpx
import pytest
from mcp import Client, StdioServerParameters

from agentkit import Agent, ScriptedRuntime, ToolRetry, tool
from agentkit.mcp import MCPServerError, MCPServerHTTP
from agentkit.mcp.server import build_server

from support import ROOT
from support.mcp_helpers import (
    CALCULATOR,
    SDK_SERVER,
    TOKEN,
    agentkit_serve,
    sdk_client,
    served,
    text_of,
)


async def check_calculator(client: Client) -> None:
    """What every client of a server offering the calculator sees: list, call, errors."""
    listed = {t.name: t for t in (await client.list_tools()).tools}
    calculate = listed["calculate"]
    function = CALCULATOR.to_function()["function"]
    assert calculate.description == function["description"]
    assert calculate.input_schema == function["parameters"]

    done = await client.call_tool("calculate", {"expression": "37 * 41"})
    assert (done.is_error, text_of(done)) == (False, "1517")

    failed = await client.call_tool("calculate", {"expression": "1/0"})
    assert (failed.is_error, text_of(failed)) == (
        True,
        "could not calculate '1/0': division by zero",
    )

    invalid = await client.call_tool("calculate", {"expression": 5})
    assert invalid.is_error
    assert text_of(invalid) == (
        "invalid arguments for calculate: expression: input should be a valid string (got 5). "
        'You sent: {"expression": 5}'
    )

    unknown = await client.call_tool("nope", {})
    assert unknown.is_error
    assert text_of(unknown).startswith("unknown tool 'nope'; available tools: calculate")


# -- stdio: `agentkit mcp` ----------------------------------------------------------------------


@pytest.mark.subprocess
async def test_the_sdk_client_uses_agentkit_mcp_over_stdio() -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agentkit.cli", "mcp", "--tools", "tools/calculator.py"],
        cwd=ROOT,
    )
    async with Client(params) as client:
        assert client.server_info is not None and client.server_info.name == "agentkit"
        await check_calculator(client)


async def test_a_tools_own_timeout_and_an_exception_are_is_error_results() -> None:
    @tool(timeout=0.2)
    async def wait(seconds: float) -> str:
        """Wait.

        Args:
            seconds: how long.
        """
        import anyio

        await anyio.sleep(seconds)
        return "waited"

    @tool
    def explode() -> str:
        """Fail."""
        raise RuntimeError("it broke")

    @tool
    def retry() -> str:
        """Ask again."""
        raise ToolRetry("try with a smaller number")

    async with Client(build_server([wait, explode, retry])) as client:
        late = await client.call_tool("wait", {"seconds": 5})
        assert (late.is_error, text_of(late)) == (True, "wait timed out after 0.2 s")
        broke = await client.call_tool("explode", {})
        assert (broke.is_error, text_of(broke)) == (True, "RuntimeError: it broke")
        again = await client.call_tool("retry", {})
        assert (again.is_error, text_of(again)) == (True, "try with a smaller number")
        quick = await client.call_tool("wait", {"seconds": 0})
        assert (quick.is_error, text_of(quick)) == (False, "waited")


# -- HTTP: `/mcp` on the server -----------------------------------------------------------------


async def test_the_sdk_client_uses_the_servers_mcp_route_with_the_token() -> None:
    with served(api_token=TOKEN) as url:
        http, client = sdk_client(url)
        async with http, client:
            await check_calculator(client)


async def test_the_mcp_route_refuses_a_missing_or_wrong_token() -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    with served(api_token=TOKEN) as url:
        async with httpx.AsyncClient() as http:
            missing = await http.post(url, json=initialize, headers=headers)
            wrong = await http.post(
                url, json=initialize, headers={**headers, "Authorization": "Bearer nope"}
            )
            right = await http.post(
                url, json=initialize, headers={**headers, "Authorization": f"Bearer {TOKEN}"}
            )
        with pytest.raises(MCPServerError, match="did not start"):
            async with MCPServerHTTP(url, connect_timeout=10):
                pass
    assert missing.status_code == wrong.status_code == 401
    assert "Bearer" in missing.json()["errors"][0]["message"]
    assert TOKEN not in wrong.text
    assert right.status_code == 200


def test_the_mcp_route_refuses_an_evil_origin_or_host() -> None:
    # A page on another site must not reach the tools through the user's browser, token or not.
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {TOKEN}",
    }
    with served(api_token=TOKEN) as url:
        origin = httpx.post(
            url, json=initialize, headers={**headers, "Origin": "http://evil.example"}
        )
        host = httpx.post(url, json=initialize, headers={**headers, "Host": "evil.example"})
    assert 400 <= origin.status_code < 500 and origin.status_code != 401, origin.text
    assert 400 <= host.status_code < 500 and host.status_code != 401, host.text


async def test_our_client_and_an_agent_use_the_servers_mcp_route() -> None:
    runtime = ScriptedRuntime(
        [ScriptedRuntime.call("calculate", expression="2 ** 10"), ScriptedRuntime.answer("1024")]
    )
    with served(api_token=TOKEN) as url:
        remote = MCPServerHTTP(url, headers={"Authorization": f"Bearer {TOKEN}"})
        async with Agent(runtime, tools=[remote]) as agent:
            result = await agent.run("2 to the 10th?")
    assert result.tool_calls[0].output == "1024"
    assert TOKEN not in repr(remote)


# -- the command: `agentkit serve --mcp` --------------------------------------------------------


@pytest.mark.subprocess
async def test_agentkit_serve_mcp_serves_its_tools_and_its_mcp_servers_tools() -> None:
    stdio = f"{sys.executable} {SDK_SERVER}"
    with agentkit_serve("--mcp", "--tools", "tools/calculator.py", "--mcp-stdio", stdio) as url:
        http, client = sdk_client(url)
        async with http, client:
            await check_calculator(client)
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"calculate", "add", "pid"} <= names
            added = await client.call_tool("add", {"a": 2, "b": 40})
            assert (added.is_error, text_of(added)) == (False, "42")
