"""One run on the embedded model (SmolLM2 via llama.cpp) that pauses for approval and resumes
from its JSON state, with a new Agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentkit import Agent, RunState, tool
from agentkit.runtimes.llama_cpp import LlamaCpp

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
evaluated: list[str] = []


@tool(requires_approval=True)
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: The expression, e.g. "2 * (3 + 4)".
    """
    evaluated.append(expression)
    left, _, right = expression.partition("*")
    return str(int(left) * int(right)) if right else expression


async def test_the_embedded_model_pauses_for_approval_and_resumes_from_json() -> None:
    runtime = LlamaCpp()
    try:
        # The embedded model's profile forces a tool call in the first step.
        agent = Agent(runtime, tools=[calculate], temperature=0, max_tokens=40)
        paused = await agent.run("What is 37 * 41?")
        assert paused.stop_reason == "approval", paused.output
        [pending] = paused.pending
        assert pending.name == "calculate" and "expression" in pending.arguments
        assert evaluated == []
        assert paused.state is not None
        text = paused.state.to_json()

        again = Agent(runtime, tools=[calculate], temperature=0, max_tokens=40)
        result = await again.resume(RunState.from_json(text), approve=[pending.id])
        assert evaluated == [pending.arguments["expression"]]
        assert result.stop_reason == "answer"
        assert result.steps == 2 and result.output.strip()
        roles = [m.role for m in result.messages]
        assert roles == ["user", "assistant", "tool", "assistant"]
        assert result.usage.completion_tokens > paused.usage.completion_tokens
    finally:
        await runtime.aclose()


@pytest.mark.subprocess
def test_the_example_pauses_in_one_process_and_resumes_in_another(tmp_path: Path) -> None:
    script = ROOT / "examples" / "approval_automation.py"

    def run(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    started = run("start", "run.json")
    assert started[0] == "paused; state saved to run.json"
    assert started[1].startswith("waiting for approval: issue_refund(")
    assert not (tmp_path / "refunds.log").exists()
    assert json.loads((tmp_path / "run.json").read_text())["pending"][0]["name"] == "issue_refund"

    resumed = run("approve", "run.json")
    assert resumed[0].startswith("issue_refund: refunded ")
    assert resumed[-1].startswith("answer: ")
    assert len((tmp_path / "refunds.log").read_text().splitlines()) == 1
    assert not (tmp_path / "run.json").exists()
