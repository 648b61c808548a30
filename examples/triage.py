"""Triage on the embedded model (SmolLM2-135M-Instruct), offline: a triage agent hands an
arithmetic question to a math agent, which answers it with the calculator.

python examples/triage.py
"""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import anyio

from agentkit import (
    Agent,
    Event,
    HandedOff,
    Message,
    RunFinished,
    ToolCallFinished,
    get_runtime,
    handoff,
)
from agentkit.tools.loader import load_tools

TOOLS = Path(__file__).resolve().parents[1] / "tools"
QUESTION = "What is 37 * 41?"


def the_question(messages: list[Message]) -> list[Message]:
    """What the math agent sees of the conversation (an input filter): the user's words. With
    the transfer's call and result left in, a model this small keeps calling tools after its
    own call has answered, instead of answering."""
    return [m for m in messages if m.role == "user"]


async def main() -> None:
    # One embedded model serves both agents. A 135M model does not decide to use a tool by
    # itself: each agent's first step must call one (triage's only tool is the transfer), with
    # greedy sampling; once its tools have answered, an agent goes back to `auto` and answers.
    async with get_runtime("local") as model:
        math = Agent(
            model,
            tools=load_tools([TOOLS / "calculator.py"]),
            name="math",
            instructions="You do arithmetic with the calculator.",
            tool_choice="required",
            temperature=0,
        )
        triage = Agent(
            model,
            name="triage",
            instructions="You pass arithmetic questions to math.",
            handoffs=[handoff(math, input_filter=the_question)],
            tool_choice="required",
            temperature=0,
        )
        print(f"you> {QUESTION}")
        async with aclosing(triage.stream(QUESTION)) as events:
            async for event in events:
                show(event)


def show(event: Event) -> None:
    """Print who does what: each handoff, each tool call by the agent that made it (the
    transfer calls aside), and the answer with the agent that gave it."""
    if isinstance(event, HandedOff):
        print(f"{event.record.source} -> {event.record.target}")
    elif isinstance(event, ToolCallFinished) and not event.record.call.name.startswith(
        "transfer_to_"
    ):
        record = event.record
        shown = record.output if record.ok else f"error: {record.error}"
        print(f"  {event.path}: {record.call.name}({record.call.arguments_json()}) -> {shown}")
    elif isinstance(event, RunFinished):
        print(f"{event.result.agent}> {event.result.output}")


if __name__ == "__main__":
    anyio.run(main)
