"""An assistant on the embedded model (SmolLM2-135M-Instruct), offline, with two ready-made tools.

python examples/local_assistant.py
"""

from __future__ import annotations

from pathlib import Path

from agentkit import Agent
from agentkit.tools.loader import load_tools

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def main() -> None:
    tools = load_tools([TOOLS / "calculator.py", TOOLS / "clock.py"])
    # A 135M model does not decide to use a tool by itself: make its first step a call; once
    # the tools have answered, the agent goes back to `auto` so the model can answer.
    agent = Agent("local", tools=tools, tool_choice="required", temperature=0)
    for question in ("What is 37 * 41?", "What time is it in Tokyo?"):
        result = agent.run_sync(question)
        print(f"you> {question}")
        for record in result.tool_calls:
            shown = record.output if record.ok else f"error: {record.error}"
            print(f"  {record.call.name}({record.call.arguments_json()}) -> {shown}")
        print(f"assistant> {result.output}")


if __name__ == "__main__":
    main()
