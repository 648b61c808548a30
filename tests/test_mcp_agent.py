"""An agent on the embedded model calling MCP tools, in Python and through `agentkit run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentkit import Agent
from agentkit.mcp import MCPServerStdio
from agentkit.runtimes.llama_cpp import LlamaCpp

from support import ROOT
from support.mcp_helpers import children, sdk_stdio

pytestmark = pytest.mark.subprocess

# The calculator served over MCP by `agentkit mcp`, run as a child process.
CALCULATOR_OVER_MCP = [
    sys.executable,
    "-m",
    "agentkit.cli",
    "mcp",
    "--tools",
    "tools/calculator.py",
]


async def test_the_embedded_model_calls_an_mcp_tool_and_answers_with_its_result(
    model_path: Path,
) -> None:
    before = children()
    server = MCPServerStdio(CALCULATOR_OVER_MCP[0], CALCULATOR_OVER_MCP[1:], cwd=ROOT)
    agent = Agent(LlamaCpp(model_path), tools=[server], tool_choice="required", temperature=0)
    async with agent:
        result = await agent.run("What is 37 * 41?")
    assert [r.call.name for r in result.tool_calls] == ["calculate"]
    assert result.tool_calls[0].output == "1517"
    assert "1517" in result.output
    assert children() - before == set()


async def test_the_embedded_model_calls_a_tool_of_a_server_written_with_the_sdk(
    model_path: Path,
) -> None:
    server = sdk_stdio(tool_filter={"add"})
    agent = Agent(LlamaCpp(model_path), tools=[server], tool_choice="required", temperature=0)
    async with agent:
        result = await agent.run("What is 20 + 22?")
    assert [r.call.name for r in result.tool_calls] == ["add"]
    assert result.tool_calls[0].call.arguments == {"a": 20, "b": 22}
    assert result.tool_calls[0].output == "42"
    assert "42" in result.output


@pytest.mark.model
def test_agentkit_run_with_mcp_stdio() -> None:
    # The embedded model's first step must call a tool (`required`, the command's default).
    done = subprocess.run(
        [
            *(sys.executable, "-m", "agentkit.cli", "run", "What is 37 * 41?", "-v"),
            *("--mcp-stdio", " ".join(CALCULATOR_OVER_MCP)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert '-> calculate({"expression":"37 * 41"})' in done.stderr
    assert "<- calculate: 1517" in done.stderr
    assert "1517" in done.stdout


def test_agentkit_run_with_a_server_that_cannot_start_is_one_clear_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentkit.cli", "run", "hi", "--mcp-stdio", "no-such-command x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: MCP server 'no-such-command': did not start: FileNotFoundError: ")
    )
