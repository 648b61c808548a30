"""A remote A2A agent's question pauses the calling run: `agentkit serve --a2a` in a process of
its own asks for approval of a transfer; our run pauses with its question, and the decision goes
to the same remote task when the run resumes (here, or in a fresh process)."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from agentkit import Agent, FunctionRuntime, Generation, ModelRequest, ScriptedRuntime
from agentkit.protocols.a2a import A2AAgent

from support.a2a import ServeProcess, serving_bank

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serving_bank(tmp_path_factory.mktemp("bank")) as server:
        yield server


def shop_model(request: ModelRequest) -> Generation | str:
    """Asks the bank to pay; then reports what the bank said."""
    last = request.messages[-1]
    if last.role == "tool":
        return f"The bank says: {last.content}"
    return ScriptedRuntime.call("bank", input="please pay bob")


def shop(url: str) -> Agent:
    return Agent(FunctionRuntime(shop_model), tools=[A2AAgent(url)], name="shop")


async def test_the_remote_question_pauses_our_run_and_approval_completes_the_task(
    bank: ServeProcess,
) -> None:
    agent = shop(bank.url)
    paused = await agent.run("Pay bob.")
    assert paused.stop_reason == "approval"
    [call] = paused.pending
    assert call.name == "bank" and call.arguments == {"input": "please pay bob"}
    assert call.question is not None
    assert call.question.startswith('Approval needed for transfer({"to": "bob", "amount": 250})')
    assert set(call.data) == {"task_id", "context_id", "pending"}
    assert paused.state is not None
    result = await agent.resume(paused.state, approve=[call.id])
    # The remote task went on with the approval: the transfer ran there, and its answer is ours.
    assert result.tool_calls[0].output == "Done: sent 250 EUR to bob."
    assert result.output == "The bank says: Done: sent 250 EUR to bob."


async def test_a_denial_reaches_the_remote_agent_with_its_reason(bank: ServeProcess) -> None:
    agent = shop(bank.url)
    paused = await agent.run("Pay bob.")
    assert paused.state is not None
    result = await agent.resume(paused.state, deny={paused.pending[0].id: "over budget"})
    # The remote model was told the denial, and answered with it.
    assert result.tool_calls[0].output == "Done: Error: denied by the user: over budget."
    assert result.output.endswith("denied by the user: over budget.")


async def test_a_run_paused_on_a_remote_question_resumes_in_a_fresh_process(
    bank: ServeProcess, tmp_path: Path
) -> None:
    paused = await shop(bank.url).run("Pay bob.")
    assert paused.state is not None
    state_file = tmp_path / "state.json"
    state_file.write_text(paused.state.to_json())
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from agentkit import RunState
        from test_a2a_asks import shop

        state = RunState.from_json(open({str(state_file)!r}).read())
        result = shop({bank.url!r}).resume_sync(state, approve=[state.pending[0].id])
        print(result.output)
        """
    )
    command = [sys.executable, "-c", script]
    done = await anyio.run_process(command, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "The bank says: Done: sent 250 EUR to bob."
    # What named the remote task was the state's JSON alone.
    assert json.loads(state_file.read_text())["pending"][0]["data"]["task_id"]
