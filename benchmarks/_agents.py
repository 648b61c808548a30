"""One agent per framework, each driven by a zero-cost scripted model through its public API.

The model's first turn calls `add` `calls` times in one step; once it sees the results it
answers with their sum, read back from the tool results it was sent. So the expected answer
only appears when every call really ran and its result reached the model; each run's answer is
checked, and each framework counts its own tool executions.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import _common  # noqa: F401  (sets the telemetry-off environment first)


@dataclass
class Case:
    """A built agent: `run()` makes one whole run and checks the answer."""

    run: Callable[[], Awaitable[None]]
    executions: Callable[[], int]


def script(calls: int) -> tuple[list[tuple[int, int]], str]:
    """The arguments of each call and the expected answer: `add(2, 3)` -> "5" for one call."""
    pairs = [(2, 3)] if calls == 1 else [(i, i) for i in range(1, calls + 1)]
    return pairs, str(sum(a + b for a, b in pairs))


def counter() -> tuple[Callable[[int, int], int], Callable[[], int]]:
    """An `add` tool that counts its calls, and the count."""
    count = 0

    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: The first number.
            b: The second number.
        """
        nonlocal count
        count += 1
        return a + b

    return add, lambda: count


def _check(output: Any, expected: str) -> None:
    if str(output).strip() != expected:
        raise AssertionError(f"expected answer {expected!r}, got {output!r}")


def agentkit_case(calls: int) -> Case:
    from agentkit import Agent, tool
    from agentkit.model_api import Generation, ModelRequest, ToolCall
    from agentkit.runtimes import FunctionRuntime

    pairs, expected = script(calls)
    add, executions = counter()

    def model(request: ModelRequest) -> Generation:
        messages = request.messages
        if messages[-1].role == "tool":
            results = [int(m.content) for m in messages[-len(pairs) :]]
            return Generation(response=str(sum(results)), finish_reason="stop")
        return Generation(
            tool_calls=[
                ToolCall(id=f"c{i}", name="add", arguments={"a": a, "b": b})
                for i, (a, b) in enumerate(pairs)
            ],
            finish_reason="tool_calls",
        )

    agent = Agent(FunctionRuntime(model), tools=[tool(add)])

    async def run() -> None:
        result = await agent.run("Add the numbers with the add tool.")
        _check(result.output, expected)

    return Case(run, executions)


def pydantic_ai_case(calls: int) -> Case:
    from pydantic_ai import Agent
    from pydantic_ai.messages import (
        ModelMessage,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    pairs, expected = script(calls)
    add, executions = counter()

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
        if returns:
            return ModelResponse(parts=[TextPart(str(sum(int(p.content) for p in returns)))])
        return ModelResponse(
            parts=[
                ToolCallPart("add", {"a": a, "b": b}, tool_call_id=f"c{i}")
                for i, (a, b) in enumerate(pairs)
            ]
        )

    Agent.instrument_all(False)
    agent = Agent(FunctionModel(model), tools=[add])

    async def run() -> None:
        result = await agent.run("Add the numbers with the add tool.")
        _check(result.output, expected)

    return Case(run, executions)


def openai_agents_case(calls: int) -> Case:
    import json

    from agents import Agent, ModelResponse, Runner, Usage, function_tool, set_tracing_disabled
    from agents.models.interface import Model
    from openai.types.responses import (
        ResponseFunctionToolCall,
        ResponseOutputMessage,
        ResponseOutputText,
    )

    set_tracing_disabled(True)
    pairs, expected = script(calls)
    add, executions = counter()

    class ScriptedModel(Model):
        async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kw: Any):  # type: ignore[no-untyped-def]
            outputs = [
                int(item["output"])
                for item in input
                if isinstance(item, dict) and item.get("type") == "function_call_output"
            ]
            if outputs:
                text = ResponseOutputText(
                    text=str(sum(outputs)), type="output_text", annotations=[]
                )
                out: list[Any] = [
                    ResponseOutputMessage(
                        id="m", type="message", role="assistant", status="completed", content=[text]
                    )
                ]
            else:
                out = [
                    ResponseFunctionToolCall(
                        type="function_call",
                        call_id=f"c{i}",
                        name="add",
                        arguments=json.dumps({"a": a, "b": b}),
                    )
                    for i, (a, b) in enumerate(pairs)
                ]
            return ModelResponse(output=out, usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kw: Any) -> Any:
            raise AssertionError("W2 runs without streaming")

    agent = Agent(name="bench", model=ScriptedModel(), tools=[function_tool(add)])

    async def run() -> None:
        result = await Runner.run(agent, "Add the numbers with the add tool.")
        _check(result.final_output, expected)

    return Case(run, executions)


_OBSERVED = re.compile(r"-?\d+")


def smolagents_case(calls: int) -> Case:
    from smolagents import Model, ToolCallingAgent, tool
    from smolagents.models import (
        ChatMessage,
        ChatMessageToolCall,
        ChatMessageToolCallFunction,
        MessageRole,
    )
    from smolagents.monitoring import LogLevel, TokenUsage

    pairs, expected = script(calls)
    add, executions = counter()

    def call(i: int, name: str, arguments: dict[str, Any]) -> ChatMessageToolCall:
        function = ChatMessageToolCallFunction(name=name, arguments=arguments)
        return ChatMessageToolCall(function=function, id=f"c{i}", type="function")

    class ScriptedModel(Model):
        def generate(self, messages: list[Any], *args: Any, **kw: Any) -> ChatMessage:
            last = messages[-1]
            if last.role == MessageRole.TOOL_RESPONSE:
                # Results come back as text observations: "Observation:\n5".
                text = "".join(part.get("text", "") for part in last.content)
                observed = [int(n) for n in _OBSERVED.findall(text.split("Observation", 1)[1])]
                answer = str(sum(observed[-len(pairs) :]))
                tool_calls = [call(len(pairs), "final_answer", {"answer": answer})]
            else:
                tool_calls = [call(i, "add", {"a": a, "b": b}) for i, (a, b) in enumerate(pairs)]
            return ChatMessage(
                role=MessageRole.ASSISTANT,
                content="",
                tool_calls=tool_calls,
                token_usage=TokenUsage(0, 0),
            )

    agent = ToolCallingAgent(
        tools=[tool(add)], model=ScriptedModel(), verbosity_level=LogLevel.OFF, max_steps=4
    )

    async def run() -> None:
        # smolagents is synchronous: the run blocks, as it would for its users.
        _check(agent.run("Add the numbers with the add tool."), expected)

    return Case(run, executions)


FRAMEWORKS: dict[str, Callable[[int], Case]] = {
    "agentkit": agentkit_case,
    "pydantic-ai": pydantic_ai_case,
    "openai-agents": openai_agents_case,
    "smolagents": smolagents_case,
}
