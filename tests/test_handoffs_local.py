"""A handoff on the embedded model (SmolLM2 via llama.cpp): triage hands an arithmetic
question to a math agent, which answers it through the calculator. Tool choice and sampling
are the embedded model's profile's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentkit import Agent, Message, ModelRequest, RunContext, RunHooks, handoff
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.tools.loader import load_tools

TOOLS = Path(__file__).resolve().parents[1] / "tools"


class Requests(RunHooks[Any]):
    """Every request an agent's model is sent."""

    def __init__(self) -> None:
        self.sent: list[ModelRequest] = []

    async def before_model(self, ctx: RunContext[Any], request: ModelRequest) -> None:
        self.sent.append(request)


def the_question(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.role == "user"]


async def test_the_embedded_model_hands_off_to_math_which_answers_with_the_calculator(
    model_path: Path,
) -> None:
    to_triage, to_math = Requests(), Requests()
    async with LlamaCpp(model_path) as model:
        math = Agent(
            model,
            tools=load_tools([TOOLS / "calculator.py"]),
            name="math",
            instructions="You do arithmetic with the calculator.",
            max_tokens=48,
            hooks=[to_math],
        )
        triage = Agent(
            model,
            name="triage",
            instructions="You pass arithmetic questions to math.",
            handoffs=[handoff(math, input_filter=the_question)],
            max_tokens=48,
            hooks=[to_triage],
        )
        result = await triage.run("What is 37 * 41?")

    assert result.agent == "math"
    assert "1517" in result.output
    [record] = result.handoffs
    assert (record.source, record.target, record.step, record.returned) == (
        "triage",
        "math",
        1,
        False,
    )
    transfer, calculation = result.tool_calls
    assert transfer.call.name == "transfer_to_math" and transfer.call.arguments == {}
    assert calculation.call.name == "calculate"
    assert calculation.call.arguments == {"expression": "37 * 41"}
    assert calculation.output == "1517"

    # The profile forces the first step of each agent to call a tool, greedily.
    [routed] = to_triage.sent
    assert routed.messages[0].content == "You pass arithmetic questions to math."
    assert [t.name for t in routed.tools] == ["transfer_to_math"]
    assert (routed.tool_choice, routed.temperature) == ("required", 0.0)
    # From the handoff on, math's instructions and tools are in force; it sees the question
    # (its filter's choice), is made to call the calculator, then answers.
    first, answer = to_math.sent
    assert [(m.role, m.content) for m in first.messages] == [
        ("system", "You do arithmetic with the calculator."),
        ("user", "What is 37 * 41?"),
    ]
    assert [t.name for t in first.tools] == ["calculate"]
    assert (first.tool_choice, first.temperature) == ("required", 0.0)
    assert answer.tool_choice == "auto"
    assert answer.messages[-1].role == "tool" and answer.messages[-1].content == "1517"
