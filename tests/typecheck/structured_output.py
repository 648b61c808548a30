"""Checked by mypy --strict in tests/test_output_typing.py: the common cases need no casts."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel
from typing_extensions import TypedDict, assert_type

from agentkit import Agent, RunResult, ScriptedRuntime
from agentkit.events import RunFinished


class Person(BaseModel):
    name: str
    age: int


@dataclasses.dataclass
class Point:
    x: float


class Movie(TypedDict):
    title: str


async def main() -> None:
    runtime = ScriptedRuntime()

    plain = Agent(runtime)
    assert_type(plain, Agent[str])
    assert_type((await plain.run("hi")).output, str)

    agent = Agent(runtime, output_type=Person, instructions="Extract.", max_steps=3)
    result = await agent.run("Ada is 36.")
    assert_type(result, RunResult[Person])
    assert_type(result.output.age, int)
    assert_type(result.text, str)
    assert_type(agent.run_sync("again").output.name, str)

    assert_type((await Agent(runtime, output_type=Point).run("p")).output.x, float)
    assert_type((await Agent(runtime, output_type=Movie).run("m")).output["title"], str)
    assert_type((await Agent(runtime, output_type=int).run("n")).output, int)
    assert_type((await Agent(runtime, output_type=list[str]).run("l")).output, list[str])

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    loose = Agent(runtime, output_type=schema)
    assert_type(loose, Agent[Any])

    async for event in agent.stream("go"):
        if isinstance(event, RunFinished):
            assert_type(event.result.output, Any)


def annotated(agent: Agent[Person]) -> int:
    return agent.run_sync("x").output.age
