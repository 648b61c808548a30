"""Tool calls on the grammar engine, on the embedded model: argument keywords the hand-written
GBNF builder left to the validator (`pattern`, `format`, `multipleOf`, fractional bounds) are
held while the model writes, several calls are held in both chat formats, and under `auto` the
model may still answer in plain text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from agentkit.chat_formats import get_format
from agentkit.model_api import FunctionDefinition, ToolCall
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.wire.workers_ai import GenerationRequest

from support.engine import Vocabulary, grammar_accepts, open_vocabulary

pytestmark = pytest.mark.model

BOOK = FunctionDefinition(
    name="book_flight",
    description="Book a flight.",
    parameters={
        "type": "object",
        "properties": {
            "flight": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{3,4}$"},
            "day": {"type": "string", "format": "date"},
            "bags": {"type": "number", "multipleOf": 0.5, "maximum": 3},
            "discount": {"type": "number", "exclusiveMinimum": 0.05, "maximum": 0.5},
        },
        "required": ["flight", "day", "bags", "discount"],
    },
)
WEATHER = FunctionDefinition(
    name="get_weather",
    description="The current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "pattern": "^[A-Z][a-z]+$"}},
        "required": ["city"],
    },
)


@pytest.fixture(scope="module")
def vocabulary(model_path: Path) -> Iterator[Vocabulary]:
    yield from open_vocabulary(model_path)


@pytest.fixture(scope="module", params=["chatml", "llama3"])
def local(request: pytest.FixtureRequest, model_path: Path) -> Iterator[LlamaCpp]:
    runtime = LlamaCpp(model_path, chat_format=request.param)
    yield runtime
    anyio.run(runtime.aclose)


def build(prompt: str, tools: list[FunctionDefinition], **fields: Any) -> GenerationRequest:
    fields.setdefault("temperature", 0)
    fields.setdefault("max_tokens", 120)
    return GenerationRequest.build(
        messages=[{"role": "user", "content": prompt}], tools=tools, **fields
    )


def test_the_keywords_are_held_by_the_call_grammar(vocabulary: Vocabulary) -> None:
    good = {"flight": "AF1234", "day": "2025-03-14", "bags": 1.5, "discount": 0.1}
    wrong = [
        {**good, "flight": "af1234"},
        {**good, "day": "2025-13-14"},
        {**good, "bags": 1.25},
        {**good, "discount": 0.05},
    ]
    for name in ("chatml", "llama3"):
        fmt = get_format(name)
        grammar = fmt.call_grammar([BOOK], "required", checked_after=False)
        assert grammar_accepts(
            vocabulary, grammar, fmt.call_text([ToolCall(name=BOOK.name, arguments=good)])
        )
        for arguments in wrong:
            text = fmt.call_text([ToolCall(name=BOOK.name, arguments=arguments)])
            assert not grammar_accepts(vocabulary, grammar, text), arguments


async def test_a_call_with_held_keywords_is_valid_under_required(local: LlamaCpp) -> None:
    prompt = "Book flight AF1234 on 14 March 2025 with one and a half bags, 10% off."
    for sampling in ({"temperature": 0}, {"temperature": 1.0, "seed": 3}):
        generation = await local.generate(build(prompt, [BOOK], tool_choice="required", **sampling))
        assert generation.finish_reason == "tool_calls", generation.response
        (call,) = generation.tool_calls[:1]
        assert call.name == "book_flight"
        jsonschema.validate(call.arguments, {**BOOK.parameters, "additionalProperties": False})
        jsonschema.Draft202012Validator(
            BOOK.parameters, format_checker=jsonschema.FormatChecker()
        ).validate(call.arguments)


async def test_several_calls_in_one_turn_are_each_valid(local: LlamaCpp) -> None:
    fmt = local.chat_format
    prompt = "What is the weather in Paris, and in Rome, and in Oslo?"
    generation = await local.generate(
        build(prompt, [WEATHER], tool_choice="required", parallel_tool_calls=True, seed=5)
    )
    assert generation.finish_reason == "tool_calls"
    assert 1 <= len(generation.tool_calls) <= 8
    for call in generation.tool_calls:
        jsonschema.validate(call.arguments, WEATHER.parameters)
    # What the grammar held is the format's own text of those calls.
    written = fmt.parse(fmt.call_text(generation.tool_calls))[1]
    assert [(c.name, c.arguments) for c in written] == [
        (c.name, c.arguments) for c in generation.tool_calls
    ]


async def test_under_auto_the_model_may_answer_in_text(local: LlamaCpp) -> None:
    generation = await local.generate(
        build("Hello! Please just say hi back to me.", [WEATHER], tool_choice="auto", max_tokens=30)
    )
    assert not generation.tool_calls
    assert generation.response.strip()
    assert generation.finish_reason in ("stop", "length")
    assert json.dumps(generation.response)  # plain text, as the model wrote it
