"""An agent run on the scripted runtime: the loop, tools and events, no model needed.

python examples/scripted_agent.py
"""

from __future__ import annotations

import anyio

from agentkit import Agent, ScriptedRuntime, tool
from agentkit.events import RunFinished, ToolCallFinished, ToolCallStarted


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


@tool
async def weather(city: str) -> dict[str, object]:
    """Current weather in a city.

    Args:
        city: The city's name.
    """
    return {"city": city, "sky": "clear", "celsius": 21}


async def main() -> None:
    # The model's turns, scripted: two calls in one step, then the answer.
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("add", {"a": 2, "b": 3}), ("weather", {"city": "Paris"})),
            ScriptedRuntime.answer("2 + 3 = 5, and Paris is clear at 21 °C."),
        ]
    )
    agent = Agent(runtime, tools=[add, weather], instructions="Answer briefly.")
    async for event in agent.stream("What is 2 + 3, and how is the weather in Paris?"):
        if isinstance(event, ToolCallStarted):
            print(f"-> {event.call.name}({event.call.arguments_json()})")
        elif isinstance(event, ToolCallFinished):
            print(f"<- {event.record.output}")
        elif isinstance(event, RunFinished):
            print(event.result.output)
            print(f"{event.result.steps} steps, {len(event.result.tool_calls)} tool calls")
    runtime.assert_complete()


if __name__ == "__main__":
    anyio.run(main)
