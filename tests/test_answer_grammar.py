"""Structured answers on the local runtime: `response_format` held by a grammar, on the real
embedded model (SmolLM2-135M-Instruct), greedy and sampled, with and without tools offered."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from agentkit import Message, RequestValidationError, SchemaGrammarError
from agentkit.chat_formats import answer, get_format
from agentkit.chat_formats._unfold import MAX_NESTING
from agentkit.model_api import FunctionDefinition, ModelRequest, ToolCall
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.wire import GenerationRequest

from support.answer_schemas import ANSWER_SCHEMAS, JSON_OBJECT_PROMPT
from support.engine import Vocabulary, grammar_accepts, open_vocabulary

WEATHER = FunctionDefinition(
    name="get_weather",
    description="The current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city.", "maxLength": 40}},
        "required": ["city"],
    },
)
SEEDS = (22, 33, 44)
MAX_TOKENS = 160  # the largest answer here (the invoice) is about 120 tokens


@pytest.fixture(scope="module")
def runtime(model_path: Path) -> Iterator[LlamaCpp]:
    local = LlamaCpp(model_path)
    yield local
    anyio.run(local.aclose)


@pytest.fixture(scope="module")
def vocabulary(model_path: Path) -> Iterator[Vocabulary]:
    yield from open_vocabulary(model_path)


def fmt(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": schema}


def request(prompt: str, schema: dict[str, Any], **fields: Any) -> ModelRequest:
    fields.setdefault("max_tokens", MAX_TOKENS)
    return ModelRequest(messages=[Message.user(prompt)], response_format=fmt(schema), **fields)


# -- every schema, every way of sampling ----------------------------------------------------


@pytest.mark.parametrize("name", list(ANSWER_SCHEMAS))
async def test_every_answer_fits_its_schema(runtime: LlamaCpp, name: str) -> None:
    prompt, schema = ANSWER_SCHEMAS[name]
    runtime.check_response_format(fmt(schema))
    samplings = [{"temperature": 0.0}] + [{"temperature": 0.8, "seed": s} for s in SEEDS]
    for sampling in samplings:
        generation = await runtime.generate(request(prompt, schema, **sampling))
        assert generation.finish_reason == "stop", (sampling, generation.response)
        assert not generation.tool_calls
        jsonschema.validate(json.loads(generation.response), schema)


@pytest.mark.parametrize("name", list(ANSWER_SCHEMAS))
async def test_with_a_tool_offered_the_answer_is_a_valid_call_or_a_valid_object(
    runtime: LlamaCpp, name: str
) -> None:
    prompt, schema = ANSWER_SCHEMAS[name]
    # Greedy and one seed: the answer grammar alone is sampled with every seed above.
    samplings = [{"temperature": 0.0}, {"temperature": 0.8, "seed": SEEDS[0]}]
    for sampling in samplings:
        generation = await runtime.generate(
            request(prompt, schema, tools=[WEATHER], tool_choice="auto", **sampling)
        )
        # Or ended early, complete, where the model ran on (a time's fraction of a second
        # goes on for as many digits as it likes): the runtime steers it to a close.
        ended = generation.finish_reason in ("stop", "tool_calls") or generation.truncated
        assert ended, generation.response
        if generation.tool_calls:
            assert generation.finish_reason == "tool_calls"
            for call in generation.tool_calls:
                assert call.name == "get_weather"
                jsonschema.validate(call.arguments, WEATHER.parameters)
        else:
            jsonschema.validate(json.loads(generation.response), schema)


# -- calls and answers under one grammar -----------------------------------------------------


async def test_a_weather_question_with_the_tool_offered_becomes_a_call(runtime: LlamaCpp) -> None:
    _, schema = ANSWER_SCHEMAS["flat-object"]
    generation = await runtime.generate(
        request(
            "What is the weather in Paris? Use the tool.",
            schema,
            tools=[WEATHER],
            tool_choice="auto",
            temperature=0.0,
        )
    )
    assert [c.name for c in generation.tool_calls] == ["get_weather"]
    assert generation.response == ""
    assert generation.finish_reason == "tool_calls"


async def test_after_the_tool_answered_the_answer_is_the_object(runtime: LlamaCpp) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}, "celsius": {"type": "number"}},
        "required": ["city", "celsius"],
        "additionalProperties": False,
    }
    generation = await runtime.generate(
        request(
            "What is the weather in Paris?",
            schema,
            tools=[WEATHER],
            tool_choice="none",
            temperature=0.0,
        ).model_copy(
            update={
                "messages": [
                    Message.user("What is the weather in Paris?"),
                    Message.model_validate(
                        {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [
                                {"id": "c1", "name": "get_weather", "arguments": {"city": "Paris"}}
                            ],
                        }
                    ),
                    Message.model_validate(
                        {"role": "tool", "tool_call_id": "c1", "content": '{"celsius": 21}'}
                    ),
                ]
            }
        )
    )
    assert not generation.tool_calls
    value = json.loads(generation.response)
    jsonschema.validate(value, schema)


async def test_required_tool_choice_still_calls(runtime: LlamaCpp) -> None:
    _, schema = ANSWER_SCHEMAS["flat-object"]
    generation = await runtime.generate(
        request(
            "Weather in Rome?", schema, tools=[WEATHER], tool_choice="required", temperature=0.0
        )
    )
    assert [c.name for c in generation.tool_calls] == ["get_weather"]


async def test_json_object_mode_gives_an_object(runtime: LlamaCpp) -> None:
    wire = GenerationRequest.build(
        messages=[{"role": "user", "content": JSON_OBJECT_PROMPT}],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
    )
    generation = await runtime.generate(wire)
    assert isinstance(json.loads(generation.response), dict)


async def test_the_answer_streams_as_it_grows_and_joins_to_the_whole(runtime: LlamaCpp) -> None:
    prompt, schema = ANSWER_SCHEMAS["nested-object"]
    chunks = []
    generator = runtime.stream(request(prompt, schema, temperature=0.0))
    assert isinstance(generator, AsyncGenerator)
    async with aclosing(generator) as stream:
        async for chunk in stream:
            if chunk.response:
                chunks.append(chunk.response)
    whole = await runtime.generate(request(prompt, schema, temperature=0.0))
    assert len(chunks) > 5  # the object arrives piece by piece, not at the end
    assert "".join(chunks) == whole.response
    jsonschema.validate(json.loads(whole.response), schema)


async def test_the_openai_shape_is_read_too(runtime: LlamaCpp) -> None:
    prompt, schema = ANSWER_SCHEMAS["enum"]
    response_format = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    generation = await runtime.generate(
        ModelRequest(
            messages=[Message.user(prompt)],
            response_format=response_format,
            max_tokens=30,
            temperature=0.0,
        )
    )
    jsonschema.validate(json.loads(generation.response), schema)


# -- checks before any request ---------------------------------------------------------------


def test_a_malformed_response_format_is_refused_by_field(runtime: LlamaCpp) -> None:
    with pytest.raises(RequestValidationError, match=r"response_format\.type"):
        runtime.check_response_format({"type": "xml"})
    with pytest.raises(RequestValidationError, match=r"response_format\.json_schema"):
        runtime.check_response_format({"type": "json_schema", "json_schema": "a schema"})


def test_a_schema_no_grammar_can_hold_fails_naming_keyword_and_path(runtime: LlamaCpp) -> None:
    schema = {
        "type": "object",
        "properties": {"price": {"type": "number", "minimum": 0.5, "not": {"const": 1}}},
    }
    runtime.check_response_format(fmt(schema))  # `not` is left to the validator
    with pytest.raises(SchemaGrammarError) as caught:
        runtime.check_response_format(fmt(schema), validated=False)
    assert caught.value.keyword == "not"
    assert caught.value.path == "$.price"
    with pytest.raises(SchemaGrammarError, match=r"\$\.friend: keyword '\$ref'"):
        runtime.check_response_format(
            fmt({"type": "object", "properties": {"friend": {"$ref": "#/$defs/nobody"}}})
        )


def test_keywords_left_to_the_validator_pass_the_runtime_but_not_a_strict_check() -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "not": {"const": "A"}}}}
    answer.check_format(fmt(schema))  # the Agent validates the answer afterwards
    with pytest.raises(SchemaGrammarError) as caught:
        answer.check_format(fmt(schema), checked_after=False)
    assert (caught.value.keyword, caught.value.path) == ("not", "$.code")
    # What the engine holds needs no validator: `pattern` passes a strict check.
    held = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}}
    answer.check_format(fmt(held), checked_after=False)


def test_a_recursion_with_no_finite_value_is_refused() -> None:
    schema = {
        "type": "object",
        "properties": {"next": {"$ref": "#"}},
        "required": ["next"],
    }
    with pytest.raises(SchemaGrammarError, match=r"nests its references at most 3 levels"):
        answer.check_format(fmt(schema))


def test_recursion_unfolds_to_the_bound_and_no_deeper(vocabulary: Vocabulary) -> None:
    _, schema = ANSWER_SCHEMAS["recursive-ref"]
    grammar = answer.answer_grammar(get_format("chatml"), fmt(schema))
    within = nested(schema, answer.MAX_REF_DEPTH)
    assert grammar_accepts(vocabulary, grammar, json.dumps(within))
    assert not grammar_accepts(vocabulary, grammar, json.dumps(nested(schema, 4)))


def nested(schema: dict[str, Any], levels: int) -> Any:
    """A value of ANSWER_SCHEMAS["recursive-ref"] whose nodes nest `levels` deep."""
    node: dict[str, Any] = {"label": "leaf", "children": []}
    for _ in range(levels - 1):
        node = {"label": "node", "children": [node]}
    jsonschema.validate(node, schema)
    return node


def test_grammars_are_compiled_once_per_schema(vocabulary: Vocabulary) -> None:
    answer.clear_grammar_cache()
    chatml = get_format("chatml")
    _, schema = ANSWER_SCHEMAS["pydantic-invoice"]
    first = answer.answer_grammar(chatml, fmt(schema))
    again = answer.answer_grammar(chatml, {"type": "json_schema", "json_schema": dict(schema)})
    assert again is first
    with_tools = answer.answer_grammar(chatml, fmt(schema), [WEATHER], "auto")
    assert answer.answer_grammar(chatml, fmt(dict(schema)), [WEATHER], "auto") is with_tools
    info = answer.grammar_cache_info()
    assert (info.hits, info.misses) == (1, 1)
    call = chatml.call_text([ToolCall(name="get_weather", arguments={"city": "Paris"})])
    assert grammar_accepts(vocabulary, with_tools, call)
    assert not grammar_accepts(vocabulary, first, call)


def test_a_call_is_told_from_an_answer_in_both_formats() -> None:
    llama3, chatml = get_format("llama3"), get_format("chatml")
    call = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert answer.is_call(llama3, call, [WEATHER])
    assert not answer.is_call(llama3, '{"name": "Alice", "age": 31}', [WEATHER])
    assert not answer.is_call(
        llama3, '{"name": "get_weather", "parameters": {}, "x": 1}', [WEATHER]
    )
    assert answer.is_call(
        chatml, '<tool_call>\n{"name": "get_weather", "arguments": {}}', [WEATHER]
    )
    assert not answer.is_call(chatml, '{"name": "get_weather", "arguments": {}}', [WEATHER])


def test_one_grammar_holds_a_call_or_the_answer_in_both_formats(vocabulary: Vocabulary) -> None:
    call = ToolCall(name="get_weather", arguments={"city": "Paris"})
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": "^[A-Z][a-z]+$"}},
        "required": ["name"],
    }
    for name in ("llama3", "chatml"):
        chat = get_format(name)
        grammar = answer.answer_grammar(chat, fmt(schema), [WEATHER], "auto", parallel=True)
        assert grammar_accepts(vocabulary, grammar, chat.call_text([call]))
        assert grammar_accepts(vocabulary, grammar, chat.call_text([call, call]))
        assert grammar_accepts(vocabulary, grammar, '{"name": "Alice"}')
        assert not grammar_accepts(vocabulary, grammar, '{"name": "alice"}')  # the pattern
        assert not grammar_accepts(vocabulary, grammar, '{"name": "Alice"}; {"name": "Alice"}')
        too_long = ToolCall(name="get_weather", arguments={"city": "P" * 41})
        assert not grammar_accepts(vocabulary, grammar, chat.call_text([too_long]))


def intertwined(n: int) -> dict[str, Any]:
    """`n` definitions, each an object whose properties refer to every definition."""
    props = {f"p{j}": {"$ref": f"#/$defs/D{j}"} for j in range(n)}
    defs = {f"D{i}": {"type": "object", "properties": props} for i in range(n)}
    return {"$ref": "#/$defs/D0", "$defs": defs}


@pytest.mark.parametrize("n", [2, 6])
def test_definitions_that_refer_to_each_other_unfold_level_by_level(
    vocabulary: Vocabulary, n: int
) -> None:
    grammar = answer.answer_grammar(get_format("chatml"), fmt(intertwined(n)))
    levels = min(answer.MAX_REF_DEPTH * n, MAX_NESTING)

    def chain(depth: int) -> str:
        value: dict[str, Any] = {}
        for _ in range(depth - 1):
            value = {"p0": value}
        return json.dumps(value)

    assert grammar_accepts(vocabulary, grammar, chain(levels))
    assert not grammar_accepts(vocabulary, grammar, chain(levels + 1))


def test_wide_schemas_and_long_enums_are_held() -> None:
    # The GBNF builder refused these past its budget of rules; the engine compiles them.
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(4_000)}}
    answer.check_format(fmt({"properties": {"wide": wide}}))
    answer.check_format(
        fmt({"type": "object", "properties": {"pick": {"enum": list(range(12_000))}}})
    )


def test_a_schema_too_long_for_a_message_is_outlined_not_refused() -> None:
    schema = {"type": "string", "enum": [f"value-{i}" for i in range(20_000)]}
    answer.check_format(fmt(schema))  # 268,991 characters whole: shown in a few values
    chatml = get_format("chatml")
    (system,) = answer.with_instructions(chatml, [Message.system("Be brief.")], fmt(schema))
    assert system.content.endswith(
        "a JSON value of this shape (`?` marks an optional key; the full schema holds as you "
        'write):\n"value-0" | "value-1" | "value-2" | "value-3" | "value-4" | "value-5" | ...'
    )
