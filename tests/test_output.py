"""Structured answers (`Agent(output_type=...)`) on the shipped scripted runtimes: output types of
each kind, their wire shape, validation and retries, tools before the object, streaming."""

from __future__ import annotations

import dataclasses
import itertools
import json
import warnings
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from agentkit import (
    Agent,
    Capabilities,
    FunctionRuntime,
    MaxStepsExceeded,
    MemorySession,
    Message,
    ModelRequest,
    OutputValidationError,
    RunResult,
    RunState,
    RunStateError,
    SchemaGrammarError,
    ScriptedRuntime,
    TruncatedToolCall,
    UserError,
    tool,
)
from agentkit.events import PartialOutput, RunFinished, TextDelta
from agentkit.model_api import Generation
from agentkit.sessions import Entry

from support.helpers import add

answer = ScriptedRuntime.answer
call = ScriptedRuntime.call
UNENFORCED = Capabilities(response_format=False, tool_choice=True, schema_dialect="full")


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)
    email: str | None = None


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Movie(TypedDict):
    title: str
    year: int


# -- output types and their wire shape -------------------------------------------------------


async def test_a_pydantic_model_is_sent_as_its_schema_and_returned_validated() -> None:
    runtime = ScriptedRuntime(['{"name": "Ada", "age": 36}'])
    result = await Agent(runtime, output_type=Person).run("Ada is 36.")
    assert result.output == Person(name="Ada", age=36)
    assert result.text == '{"name": "Ada", "age": 36}'
    sent = runtime.requests[0].response_format
    assert sent is not None and sent["type"] == "json_schema"
    assert sent["json_schema"] == Person.model_json_schema()


@pytest.mark.parametrize(
    ("output_type", "text", "expected"),
    [
        (Point, '{"x": 1.5, "y": -2}', Point(1.5, -2.0)),
        (Movie, '{"title": "Alien", "year": 1979}', {"title": "Alien", "year": 1979}),
        (int, '{"result": 42}', 42),
        (list[str], '{"result": ["a", "b"]}', ["a", "b"]),
        (Literal["yes", "no"], '{"result": "no"}', "no"),
        (list[Person], '{"result": [{"name": "Bo", "age": 3}]}', [Person(name="Bo", age=3)]),
    ],
    ids=["dataclass", "typeddict", "int", "list-str", "literal", "list-model"],
)
async def test_each_kind_of_output_type(output_type: Any, text: str, expected: Any) -> None:
    runtime = ScriptedRuntime([text])
    result = await Agent(runtime, output_type=output_type).run("go")
    assert result.output == expected
    assert result.stop_reason == "answer"


async def test_a_non_object_output_is_wrapped_on_the_wire_with_its_definitions_at_the_root() -> (
    None
):
    runtime = ScriptedRuntime(['{"result": [{"name": "Bo", "age": 3}]}'])
    await Agent(runtime, output_type=list[Person]).run("go")
    sent = runtime.requests[0].response_format
    assert sent is not None
    schema = sent["json_schema"]
    assert schema["type"] == "object"
    assert schema["required"] == ["result"]
    assert schema["properties"]["result"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/Person"},
    }
    assert set(schema["$defs"]) == {"Person"}


async def test_a_bare_value_for_a_wrapped_type_is_accepted() -> None:
    runtime = ScriptedRuntime(["[1, 2, 3]"])
    result = await Agent(runtime, output_type=list[int]).run("go")
    assert result.output == [1, 2, 3]


async def test_a_json_schema_dict_returns_the_parsed_json() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "sky": {"enum": ["clear", "rain"]}},
        "required": ["city", "sky"],
    }
    runtime = ScriptedRuntime(
        ['{"city": "Paris", "sky": "hail"}', '{"city": "Paris", "sky": "rain"}']
    )
    result = await Agent(runtime, output_type=schema).run("weather?")
    assert result.output == {"city": "Paris", "sky": "rain"}
    assert runtime.requests[0].response_format == {"type": "json_schema", "json_schema": schema}
    told = runtime.requests[1].messages[-1].content
    assert "sky:" in told and '"hail"' in told


async def test_a_scalar_json_schema_is_wrapped_and_unwrapped() -> None:
    runtime = ScriptedRuntime(['{"result": 7}'])
    result = await Agent(runtime, output_type={"type": "integer", "minimum": 1}).run("go")
    assert result.output == 7
    sent = runtime.requests[0].response_format
    assert sent is not None
    assert sent["json_schema"]["properties"]["result"] == {"type": "integer", "minimum": 1}


def test_an_invalid_json_schema_fails_at_construction() -> None:
    with pytest.raises(UserError, match="output_type: not a valid JSON Schema"):
        Agent(ScriptedRuntime(), output_type={"type": "object", "properties": 3})


def test_a_type_with_no_schema_fails_at_construction() -> None:
    with pytest.raises(UserError, match=r"output_type: .* has no JSON Schema"):
        Agent(ScriptedRuntime(), output_type=type(lambda: None))


async def test_str_or_no_output_type_is_plain_text_with_no_format() -> None:
    runtime = ScriptedRuntime(["hello", "again"])
    assert (await Agent(runtime).run("hi")).output == "hello"
    assert (await Agent(runtime, output_type=str).run("hi")).output == "again"
    assert [r.response_format for r in runtime.requests] == [None, None]


def test_output_type_and_response_format_together_are_refused() -> None:
    with pytest.raises(UserError, match="output_type or response_format"):
        Agent(ScriptedRuntime(), output_type=Person, response_format={"type": "json_object"})


# -- runtimes that enforce, and those that do not ----------------------------------------------


class Strict(ScriptedRuntime):
    """A runtime whose grammar cannot hold a `pattern`."""

    def check_response_format(
        self,
        response_format: Mapping[str, Any],
        *,
        validated: bool = True,
        with_calls: bool = False,
    ) -> None:
        schema = response_format["json_schema"]
        for name, prop in schema.get("properties", {}).items():
            if "pattern" in prop:
                raise SchemaGrammarError(f"$.properties.{name}", "pattern", "cannot be held")


def test_a_schema_the_runtime_cannot_enforce_fails_at_construction() -> None:
    class Code(BaseModel):
        code: str = Field(pattern=r"^[A-Z]{3}$")

    with pytest.raises(SchemaGrammarError) as caught:
        Agent(Strict(), output_type=Code)
    assert (caught.value.path, caught.value.keyword) == ("$.properties.code", "pattern")
    Agent(Strict(), output_type=Person)  # a schema it can hold is fine
    # A runtime that does not enforce formats is not asked: it validates instead.
    Agent(Strict(capabilities=UNENFORCED), output_type=Code)


async def test_a_runtime_without_formats_is_told_the_schema_and_sent_none() -> None:
    runtime = ScriptedRuntime(['{"name": "Ada", "age": 36}'], capabilities=UNENFORCED)
    agent = Agent(runtime, output_type=Person, instructions="Extract the person.")
    result = await agent.run("Ada is 36.")
    assert result.output.name == "Ada"
    request = runtime.requests[0]
    assert request.response_format is None
    system = request.messages[0].content
    assert system.startswith("Extract the person.\n\n")
    assert json.dumps(Person.model_json_schema(), separators=(",", ":")) in system


# -- validation and retries --------------------------------------------------------------------


async def test_an_invalid_answer_is_told_back_and_the_fixed_one_returned() -> None:
    runtime = ScriptedRuntime(
        ['{"name": "Ada", "age": 360}', '{"name": "Ada", "age": 36}'], capabilities=UNENFORCED
    )
    result = await Agent(runtime, output_type=Person).run("Ada is 36.")
    assert result.output == Person(name="Ada", age=36)
    assert result.steps == 2
    fix = runtime.requests[1].messages[-1]
    assert fix.role == "user"
    assert "- age: must be <= 150 (got 360)" in fix.content
    assert runtime.requests[1].messages[-2].content == '{"name": "Ada", "age": 360}'


async def test_text_that_is_not_json_is_told_as_such() -> None:
    runtime = ScriptedRuntime(["Ada, 36", '{"name": "Ada", "age": 36}'])
    result = await Agent(runtime, output_type=Person).run("Ada is 36.")
    assert result.output.age == 36
    assert 'is not valid JSON (got "Ada, 36")' in runtime.requests[1].messages[-1].content


async def test_answers_invalid_beyond_the_retries_raise_with_the_partial_run() -> None:
    runtime = ScriptedRuntime(['{"name": "Ada"}', '{"age": 36}', '{"age": -1}'])
    agent = Agent(runtime, output_type=Person, max_output_retries=2)
    with pytest.raises(OutputValidationError) as caught:
        await agent.run("Ada is 36.")
    error = caught.value
    assert [str(e) for e in error.errors] == ["name: is required", "age: must be >= 0 (got -1)"]
    assert error.retries == 2 and error.text == '{"age": -1}'
    assert "after 2 retries: name: is required; age: must be >= 0 (got -1)" in str(error)
    run = error.run
    assert run is not None
    assert run.stop_reason == "invalid_output" and run.steps == 3 and run.output == '{"age": -1}'
    assert [m.role for m in run.messages] == ["user", *["assistant", "user"] * 2, "assistant"]
    runtime.assert_complete()


async def test_no_retries_raises_at_the_first_invalid_answer() -> None:
    runtime = ScriptedRuntime(['{"result": "many"}'])
    with pytest.raises(OutputValidationError, match="after 0 retries: result: input should be"):
        await Agent(runtime, output_type=int, max_output_retries=0).run("how many?")


async def test_retries_count_as_steps() -> None:
    runtime = ScriptedRuntime(["nope", "nope"])
    agent = Agent(runtime, output_type=Person, max_steps=2, max_output_retries=5)
    with pytest.raises(MaxStepsExceeded):
        await agent.run("go")


# -- tools, then the object -------------------------------------------------------------------


async def test_tools_first_then_the_object() -> None:
    class Sum(BaseModel):
        total: int
        explanation: str

    runtime = ScriptedRuntime(
        [call("add", a=2, b=3), answer('{"total": 5, "explanation": "2 + 3"}')]
    )
    result = await Agent(runtime, tools=[add], output_type=Sum).run("What is 2 + 3?")
    assert result.output == Sum(total=5, explanation="2 + 3")
    assert [r.output for r in result.tool_calls] == ["5"]
    # Tools and the answer format go together in every request.
    assert all(r.tools and r.response_format for r in runtime.requests)


async def test_a_model_told_it_repeats_a_call_is_then_asked_for_the_object_only() -> None:
    # A small model held to "a call or the object" may call on and on; once told it repeats
    # itself, it has what it needs, and its next step may write only the answer.
    runtime = ScriptedRuntime([call("add", a=2, b=3)] * 3 + [answer('{"result": 5}')])
    result = await Agent(runtime, tools=[add], output_type=int).run("What is 2 + 3?")
    assert result.output == 5
    assert "3 times in a row" in (result.tool_calls[-1].error or "")
    *calling, last = runtime.requests
    assert all(r.tools for r in calling)
    assert (last.tools, last.response_format is not None) == ([], True)


async def test_the_final_answer_after_max_steps_is_validated_too() -> None:
    runtime = ScriptedRuntime(
        [call("add", a=1, b=1), '{"result": "two"}', '{"result": 2}'], capabilities=UNENFORCED
    )
    agent = Agent(
        runtime, tools=[add], output_type=int, max_steps=1, final_answer_on_max_steps=True
    )
    result = await agent.run("1 + 1?")
    assert (result.output, result.stop_reason, result.steps) == (2, "final_answer", 3)


# -- the result ----------------------------------------------------------------------------------


async def test_the_typed_result_round_trips_through_json() -> None:
    runtime = ScriptedRuntime(['{"name": "Ada", "age": 36, "email": "ada@example.org"}'])
    result = await Agent(runtime, output_type=Person).run("go")
    again = RunResult[Person].model_validate_json(result.model_dump_json())
    assert again.output == result.output and again.messages == result.messages
    assert json.loads(result.model_dump_json())["output"]["email"] == "ada@example.org"


async def test_a_dataclass_result_serializes_without_warnings() -> None:
    runtime = ScriptedRuntime(['{"x": 1, "y": 2}'])
    result = await Agent(runtime, output_type=Point).run("go")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dumped = result.model_dump_json()
    assert json.loads(dumped)["output"] == {"x": 1.0, "y": 2.0}


# -- streaming -----------------------------------------------------------------------------------


async def test_stream_yields_partial_objects_then_the_validated_value() -> None:
    text = '{"name": "Ada Lovelace", "age": 36, "email": null}'

    def model(request: ModelRequest) -> str:
        return text

    agent = Agent(FunctionRuntime(model), output_type=Person)
    partials: list[Any] = []
    deltas: list[str] = []
    async with aclosing(agent.stream("go")) as events:
        async for event in events:
            if isinstance(event, PartialOutput):
                partials.append(event.value)
            elif isinstance(event, TextDelta):
                deltas.append(event.text)
            elif isinstance(event, RunFinished):
                finished = event.result
    assert "".join(deltas) == text
    assert partials[:2] == [{}, {"name": "Ada"}]
    assert {"name": "Ada Lovelace", "age": 36} in partials
    assert partials[-1] == {"name": "Ada Lovelace", "age": 36, "email": None}
    assert all(a != b for a, b in itertools.pairwise(partials))  # only changes
    assert finished.output == Person(name="Ada Lovelace", age=36)


async def test_stream_of_a_wrapped_output_shows_the_value_unwrapped() -> None:
    runtime = ScriptedRuntime(['{"result": ["red", "green", "blue"]}'])
    agent = Agent(runtime, output_type=list[str])
    async with aclosing(agent.stream("colours?")) as events:
        seen = [e async for e in events]
    partials = [e.value for e in seen if isinstance(e, PartialOutput)]
    assert partials == [["red"], ["red", "green"], ["red", "green", "blue"]]
    last = seen[-1]
    assert isinstance(last, RunFinished) and last.result.output == ["red", "green", "blue"]


class Node(BaseModel):
    name: str
    children: list[Node] = []


async def test_a_recursive_model_is_sent_as_an_object_at_the_root() -> None:
    runtime = ScriptedRuntime(['{"name": "a", "children": [{"name": "b"}]}'])
    result = await Agent(runtime, output_type=Node).run("tree")
    assert result.output == Node(name="a", children=[Node(name="b")])
    sent = runtime.requests[0].response_format
    assert sent is not None
    schema = sent["json_schema"]
    assert schema["type"] == "object" and "$ref" not in schema
    assert schema["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert "Node" in schema["$defs"]


async def test_an_answer_cut_off_by_max_tokens_is_told_as_such() -> None:
    runtime = ScriptedRuntime(
        [
            Generation(response='{"name": "Ada", "ag', finish_reason="length"),
            '{"name": "Ada", "age": 36}',
        ]
    )
    result = await Agent(runtime, output_type=Person, max_tokens=8).run("Ada is 36.")
    assert result.output.age == 36
    told = runtime.requests[1].messages[-1].content
    assert "- was cut off by max_tokens before it was complete\n- is not valid JSON" in told


async def test_near_json_is_read_and_an_empty_answer_told() -> None:
    runtime = ScriptedRuntime(
        ["", 'Here it is:\n```json\n{"name": "Ada", "age": 36,}\n```'], capabilities=UNENFORCED
    )
    result = await Agent(runtime, output_type=Person).run("Ada is 36.")
    assert result.output == Person(name="Ada", age=36)
    assert "- is empty; answer with the JSON object" in runtime.requests[1].messages[-1].content


async def test_a_bare_json_string_for_a_wrapped_literal() -> None:
    runtime = ScriptedRuntime(['"yes"'])
    # A Literal is no `type` to mypy, though the Agent takes one as it takes a type.
    agent = Agent(runtime, output_type=Literal["yes", "no"])  # type: ignore[call-overload]
    result = await agent.run("ok?")
    assert result.output == "yes"


async def test_a_cut_off_answer_that_begins_like_a_call_is_still_the_answer() -> None:
    # Person's first property is "name", as a tool call's is: a cut-off answer is told to fix.
    cut = Generation(response='{"name": "Ada", "ag', finish_reason="length")
    runtime = ScriptedRuntime([cut, '{"name": "Ada", "age": 36}'])
    result = await Agent(runtime, tools=[add], output_type=Person).run("Ada is 36.")
    assert result.output.age == 36


async def test_a_cut_off_call_naming_a_tool_is_still_a_cut_off_call() -> None:
    cut = Generation(response='{"name": "add", "arguments": {"a": 2', finish_reason="length")
    runtime = ScriptedRuntime([cut])
    with pytest.raises(TruncatedToolCall):
        await Agent(runtime, tools=[add], output_type=Person).run("2 + 3?")


# -- approval ------------------------------------------------------------------------------------


@tool(requires_approval=True)
def refund(order: str) -> str:
    """Refund an order.

    Args:
        order: The order's id.
    """
    return f"refunded {order}"


class Refund(BaseModel):
    order: str
    done: bool


async def test_a_run_paused_for_approval_resumes_to_the_validated_object() -> None:
    runtime = ScriptedRuntime(
        [
            call("refund", order="A-1"),
            '{"order": "A-1", "done": "maybe"}',
            '{"order": "A-1", "done": true}',
        ]
    )
    agent = Agent(runtime, tools=[refund], output_type=Refund)
    paused = await agent.run("Refund A-1")
    assert paused.stop_reason == "approval" and paused.state is not None
    state = RunState.from_json(paused.state.to_json())
    result = await agent.resume(state, approve=[paused.pending[0].id])
    assert result.output == Refund(order="A-1", done=True)
    assert [r.output for r in result.tool_calls] == ["refunded A-1"]
    # A paused run resumed by an agent with another output type is refused.
    again = await Agent(
        ScriptedRuntime([call("refund", order="B-2")]), tools=[refund], output_type=Refund
    ).run("B-2")
    assert again.state is not None
    with pytest.raises(RunStateError, match="output_type"):
        await Agent(ScriptedRuntime(), tools=[refund], output_type=Person).resume(
            again.state, approve=[again.pending[0].id]
        )


# -- sessions --------------------------------------------------------------------------------------


def crashed_after(answer: str) -> list[Entry]:
    """The journal of a run whose process died after the model answered."""
    head: Entry = {"kind": "run", "run": "run_x", "pid": 1, "host": "elsewhere"}
    said = [Message.user("Ada is 36."), Message.assistant(answer)]
    return [
        head,
        *({"run": "run_x", "kind": "message", "message": m.model_dump(mode="json")} for m in said),
    ]


async def test_an_answer_made_before_a_crash_is_settled_against_the_output_type() -> None:
    session = MemorySession()
    await session.append(crashed_after('{"name": "Ada", "age": 36}'))
    runtime = ScriptedRuntime([])
    result = await Agent(runtime, output_type=Person).run(session=session)
    assert result.output == Person(name="Ada", age=36) and runtime.requests == []
    # An unfit one is told to the model, which fixes it.
    session = MemorySession()
    await session.append(crashed_after('{"name": "Ada"}'))
    runtime = ScriptedRuntime(['{"name": "Ada", "age": 36}'])
    result = await Agent(runtime, output_type=Person).run(session=session)
    assert result.output.age == 36
    assert "- age: is required" in runtime.requests[0].messages[-1].content
