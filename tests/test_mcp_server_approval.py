"""Tools served over MCP that need approval, and tools that fail past `Exception`: checked with
the official SDK's client against `/mcp` under uvicorn on 127.0.0.1, `agentkit serve --mcp` and
`agentkit mcp` over stdio.

The SDK's client speaks the 2026-07-28 protocol by default (`mode="auto"`), where the question
comes back as an `input_required` result; `mode="legacy"` speaks 2025-11-25, where the server
sends an `elicitation/create` request. Both are checked."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters

from agentkit import tool

from support import ROOT
from support.mcp_helpers import CALCULATOR, agentkit_serve, sdk_client, served, text_of

MODES = pytest.mark.parametrize("mode", ["legacy", "auto"])

WIPED: list[str] = []


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a folder.

    Args:
        path: the folder.
    """
    WIPED.append(path)
    return f"wiped {path}"


@tool(requires_approval=lambda args: args["amount"] > 100)
def pay(amount: int) -> str:
    """Pay someone.

    Args:
        amount: how much, in euros.
    """
    return f"paid {amount}"


@tool
async def stray() -> str:
    """Await something that was cancelled elsewhere."""
    raise asyncio.CancelledError("the other task was cancelled")


@pytest.fixture(autouse=True)
def _nothing_wiped() -> None:
    WIPED.clear()


class User:
    """An elicitation callback answering `action` to every question, and keeping them."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> Any:
        self.asked.append(params.message)
        return types.ElicitResult(action=self.action)  # type: ignore[arg-type]


QUESTION = 'Allow the tool wipe to run with these arguments?\n{"path": "/srv/data"}'
CANNOT_ASK = (
    "wipe requires approval, and this client cannot be asked for it (it does not support MCP "
    "elicitation); the tool did not run. To run such tools without asking, the server's "
    "operator can start the server with --approve-all (approve_all=True in Python)."
)


@MODES
async def test_a_call_that_needs_approval_runs_when_the_user_accepts(mode: str) -> None:
    user = User("accept")
    with served(tools=[wipe]) as url:
        http, client = sdk_client(url, mode=mode, elicitation_callback=user)
        async with http, client:
            listed = (await client.list_tools()).tools[0]
            done = await client.call_tool("wipe", {"path": "/srv/data"})
    assert listed.description is not None
    assert listed.description.endswith("\n\nEach call waits for the user's approval.")
    assert (done.is_error, text_of(done)) == (False, "wiped /srv/data")
    assert user.asked == [QUESTION]
    assert WIPED == ["/srv/data"]


@MODES
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_a_call_the_user_declines_is_a_tool_error_and_does_not_run(
    mode: str, action: str
) -> None:
    user = User(action)
    with served(tools=[wipe]) as url:
        http, client = sdk_client(url, mode=mode, elicitation_callback=user)
        async with http, client:
            refused = await client.call_tool("wipe", {"path": "/srv/data"})
    said = {"decline": "declined", "cancel": "cancelled"}[action]
    assert (refused.is_error, text_of(refused)) == (
        True,
        f"wipe was not run: approval was {said} by the client's user",
    )
    assert user.asked == [QUESTION]
    assert WIPED == []


@MODES
async def test_a_client_that_cannot_be_asked_is_refused_the_calls_that_need_approval(
    mode: str,
) -> None:
    with served(tools=[wipe, pay]) as url:
        http, client = sdk_client(url, mode=mode)
        async with http, client:
            listed = {t.name: t.description for t in (await client.list_tools()).tools}
            refused = await client.call_tool("wipe", {"path": "/srv/data"})
            small = await client.call_tool("pay", {"amount": 20})
            large = await client.call_tool("pay", {"amount": 500})
    assert (refused.is_error, text_of(refused)) == (True, CANNOT_ASK)
    assert WIPED == []
    assert (small.is_error, text_of(small)) == (False, "paid 20")  # this call needs no approval
    assert large.is_error and text_of(large).startswith("pay requires approval, and this client")
    assert str(listed["pay"]).endswith("\n\nSome calls wait for the user's approval.")


@pytest.mark.subprocess
async def test_agentkit_serve_approve_all_runs_them_without_asking(tmp_path: Path) -> None:
    tools = tmp_path / "tools.py"
    tools.write_text(WIPE_FILE)
    with agentkit_serve("--mcp", "--approve-all", "--tools", str(tools)) as url:
        http, client = sdk_client(url)  # no elicitation: it could not be asked
        async with http, client:
            listed = (await client.list_tools()).tools[0]
            done = await client.call_tool("wipe", {"path": "/srv/data"})
    assert (done.is_error, text_of(done)) == (False, "wiped /srv/data")
    assert listed.description == "Wipe a folder."


WIPE_FILE = textwrap.dedent(
    '''
    from agentkit import tool

    @tool(requires_approval=True)
    def wipe(path: str) -> str:
        """Wipe a folder.

        Args:
            path: the folder.
        """
        return f"wiped {path}"
    '''
)


@pytest.mark.subprocess
async def test_agentkit_mcp_over_stdio_asks_refuses_or_approves_all(tmp_path: Path) -> None:
    tools = tmp_path / "tools.py"
    tools.write_text(WIPE_FILE)

    def command(*options: str) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", "agentkit.cli", "mcp", "--tools", str(tools), *options],
            cwd=ROOT,
        )

    user = User("accept")
    async with Client(command(), elicitation_callback=user) as client:
        asked = await client.call_tool("wipe", {"path": "/srv/data"})
    async with Client(command()) as client:
        refused = await client.call_tool("wipe", {"path": "/srv/data"})
    async with Client(command("--approve-all")) as client:
        approved = await client.call_tool("wipe", {"path": "/srv/data"})
    assert (asked.is_error, text_of(asked)) == (False, "wiped /srv/data")
    assert user.asked == [QUESTION]
    assert (refused.is_error, text_of(refused)) == (True, CANNOT_ASK)
    assert (approved.is_error, text_of(approved)) == (False, "wiped /srv/data")


@MODES
async def test_a_tool_raising_cancelled_error_fails_its_call_and_the_session_goes_on(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    with served(tools=[stray, CALCULATOR]) as url:
        http, client = sdk_client(url, mode=mode)
        async with http, client:
            failed = await client.call_tool("stray", {})
            after = await client.call_tool("calculate", {"expression": "6 * 7"})
    assert (failed.is_error, text_of(failed)) == (
        True,
        "stray raised CancelledError: the other task was cancelled",
    )
    assert (after.is_error, text_of(after)) == (False, "42")
    logged = [r for r in caplog.records if r.name == "agentkit.mcp"]
    assert [(r.levelno, r.getMessage()) for r in logged] == [
        (logging.WARNING, "tool stray raised CancelledError")
    ]
