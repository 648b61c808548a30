"""Endings: from any point of a grammar-held JSON answer, a short way to a complete, valid one
(what the local runtime writes when `max_tokens` is about to cut an answer)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema_rs
import llama_cpp
import llguidance
import numpy as np
import pytest

from agentkit import Agent, Message, tool
from agentkit.chat_formats import engine as grammars
from agentkit.chat_formats._examples import shortest_match, string_examples
from agentkit.errors import RequestValidationError, SchemaGrammarError
from agentkit.model_api import Generation, ModelRequest, ToolCall
from agentkit.runtimes import FunctionRuntime
from agentkit.runtimes._closing import Closer
from agentkit.runtimes._guidance import engine_tokenizer
from agentkit.runtimes.llama_cpp import LlamaCpp

from support.answer_schemas import ANSWER_SCHEMAS
from support.environment import JSONSCHEMABENCH, require_jsonschemabench
from support.helpers import raw_llama

STEPS = (0, 3, 12, 40)
"""How many random tokens the grammar allows are written before the ending is asked for."""


@pytest.fixture(scope="module")
def tokenizer(model_path: Path) -> Iterator[Any]:
    llama = raw_llama(model_path, vocab_only=True)
    yield engine_tokenizer(llama_cpp.llama_model_get_vocab(llama.model))
    llama.close()


@pytest.fixture(scope="module")
def closer(tokenizer: Any) -> Closer:
    return Closer(tokenizer)


def wander(tokenizer: Any, schema: dict[str, Any], steps: int, rng: random.Random) -> Any:
    """A matcher moved `steps` tokens along by choosing at random among those it allows (any
    token: long strings of odd text, numbers of many digits, keys nobody would pick)."""
    matcher = llguidance.LLMatcher(tokenizer, grammars.engine_grammar(schema).text, log_level=0)
    written: list[int] = []
    ends = set(tokenizer.eos_tokens)
    for _ in range(steps):
        if matcher.is_accepting():
            break
        bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), np.uint8), bitorder="little")
        allowed = [int(t) for t in np.flatnonzero(bits[: tokenizer.vocab_size]) if t not in ends]
        token = rng.choice(allowed)
        assert matcher.consume_token(token)
        written.append(token)
    return matcher, written


def ended(tokenizer: Any, closer: Closer, schema: dict[str, Any], steps: int, seed: int) -> Any:
    matcher, written = wander(tokenizer, schema, steps, random.Random(seed))
    before = tokenizer.decode_bytes(written)
    ending = closer.ending(matcher, before, string_examples(schema))
    assert ending is not None, f"no ending after {before!r}"
    assert not matcher.is_accepting() or ending == []
    text = tokenizer.decode_bytes(written + ending).decode()
    return json.loads(text), text, len(ending)


@pytest.mark.parametrize("name", sorted(ANSWER_SCHEMAS))
def test_every_answer_schema_ends_valid_from_anywhere(
    tokenizer: Any, closer: Closer, name: str
) -> None:
    schema = ANSWER_SCHEMAS[name][1]
    # From the start the formats too; after random tokens, what the walk cannot undo (a
    # random "...T03:45:6" that the engine's date-time lets end only as a leap second ":60").
    strict = jsonschema_rs.validator_for(schema, validate_formats=True)
    validator = jsonschema_rs.validator_for(schema)
    for steps in STEPS:
        for seed in range(3):
            value, text, _ = ended(tokenizer, closer, schema, steps, seed)
            assert (validator if steps else strict).is_valid(value), f"{name}, {steps}: {text}"


def test_from_the_start_the_ending_is_the_shortest_instance(tokenizer: Any, closer: Closer) -> None:
    shortest = {
        "flat-object": '{"name": "", "age": 0}',
        "enum": '{"sentiment": "neutral"}',  # the shortest value
        "recursive-ref": '{"label": ""}',
        "optional-fields": '{"name": ""}',
        "array-bounds": '{"fruits": ["", ""]}',  # minItems 2
        "date": '{"date": "2000-01-01"}',  # the format's example, the grammar's whole
    }
    for name, expected in shortest.items():
        _, text, _ = ended(tokenizer, closer, ANSWER_SCHEMAS[name][1], 0, 0)
        assert text == expected


def test_a_string_that_must_match_a_pattern_ends_on_the_patterns_shortest_match(
    tokenizer: Any, closer: Closer
) -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2,}$"}},
        "required": ["code"],
    }
    assert shortest_match("^[A-Z]{3}-[0-9]{2,}$") == "AAA-00"
    value, _, _ = ended(tokenizer, closer, schema, 0, 0)
    assert value == {"code": "AAA-00"}
    # Halfway through the string (the model wrote "QX"), the walk finishes it validly.
    for seed in range(5):
        value, text, _ = ended(tokenizer, closer, schema, 4, seed)
        assert jsonschema_rs.validator_for(schema).is_valid(value), text


def test_an_ending_is_written_in_the_models_own_tokens(tokenizer: Any, closer: Closer) -> None:
    """The walk goes byte by byte; what it returns is the tokenizer's tokenization of the same
    text, fewer tokens (each one less step of the budget)."""
    schema = ANSWER_SCHEMAS["pydantic-invoice"][1]
    _, text, count = ended(tokenizer, closer, schema, 0, 0)
    assert count < len(text.encode()) / 2


def test_a_grammar_with_no_reachable_end_gives_none_within_the_cap(
    tokenizer: Any, closer: Closer
) -> None:
    # A multiple of 2520 above a million: the walk tries digits, never that one.
    schema = {"type": "integer", "minimum": 1_000_000, "multipleOf": 2520}
    matcher = llguidance.LLMatcher(tokenizer, grammars.engine_grammar(schema).text, log_level=0)
    assert closer.ending(matcher, b"", cap=64) is None


def test_the_schemas_examples_patterns_and_formats_are_offered_shortest_first() -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date"},
            "cur": {"enum": ["EUR", "USD"]},
            "id": {"type": "string", "pattern": r"^\d{4}$", "default": "0001"},
            "n": {"type": "integer", "examples": [3]},
        },
    }
    assert string_examples(schema) == ("EUR", "USD", "0001", "0000", "2000-01-01")
    assert shortest_match(r"(ab|c)+x?") == "c"
    assert shortest_match(r"[^a-z]") == "0"
    assert shortest_match(r"(a)\1") is None  # a back-reference: not read
    assert shortest_match("(") is None


def jsonschemabench_sample(count: int) -> list[Path]:
    require_jsonschemabench()
    files = sorted(JSONSCHEMABENCH.glob("*.json"))
    return random.Random(7).sample(files, min(count, len(files)))


def test_real_world_schemas_end_valid_wherever_the_grammar_holds_them(
    tokenizer: Any, closer: Closer
) -> None:
    """A sample of JSONSchemaBench: wherever the answer stands, the ending parses and is valid
    against every keyword the grammar holds (the rest, `not`, `oneOf`'s exclusivity, ..., is
    the validator's after the answer, as for any answer the model writes)."""
    failures, ended_count = [], 0
    for path in jsonschemabench_sample(60):
        schema = json.loads(path.read_text())["schema"]
        try:
            grammars.engine_grammar(schema, checked_after=False)
        except SchemaGrammarError:
            continue  # a keyword no grammar holds: not this test's
        validator = jsonschema_rs.validator_for(schema)
        for steps in (0, 12):
            try:
                value, text, _ = ended(tokenizer, closer, schema, steps, 0)
            except AssertionError as exc:
                failures.append(f"{path.name}: {exc}")
                continue
            ended_count += 1
            if not validator.is_valid(value):
                failures.append(f"{path.name} after {steps}: {text[:200]}")
    assert ended_count > 60
    assert failures == []


# -- on the model: answers that must end within max_tokens -----------------------------------


def shortest_tokens(tokenizer: Any, closer: Closer, schema: dict[str, Any]) -> int:
    grammar = grammars.engine_grammar(schema)
    matcher = llguidance.LLMatcher(tokenizer, grammar.text, log_level=0)
    ending = closer.ending(matcher, b"", grammar.hints)
    assert ending is not None
    return len(ending)


@pytest.fixture(scope="module")
def runtime(model_path: Path) -> Iterator[LlamaCpp]:
    local = LlamaCpp(model_path, parallel=4)
    yield local
    anyio.run(local.aclose)


def answer_request(prompt: str, schema: dict[str, Any], max_tokens: int, seed: int) -> Any:
    return ModelRequest(
        messages=[Message.user(prompt)],
        response_format={"type": "json_schema", "json_schema": schema},
        max_tokens=max_tokens,
        temperature=1.0,
        seed=seed,
    )


def guarantee_cases(tokenizer: Any, closer: Closer) -> list[tuple[str, str, dict[str, Any]]]:
    cases = [(name, prompt, schema) for name, (prompt, schema) in ANSWER_SCHEMAS.items()]
    for path in jsonschemabench_sample(12):
        schema = json.loads(path.read_text())["schema"]
        try:
            grammars.engine_grammar(schema, checked_after=False)
        except SchemaGrammarError:
            continue
        cases.append((path.name, "Give an example of this JSON.", schema))
    return cases


async def test_sampled_answers_with_little_room_end_complete_and_valid(
    runtime: LlamaCpp, tokenizer: Any, closer: Closer
) -> None:
    """At temperature 1.0 with `max_tokens` a few tokens above the shortest instance, every
    answer parses and is valid; those the runtime ended early say so (`truncated`)."""
    failures, steered = [], 0
    limiter = anyio.CapacityLimiter(4)

    async def one(name: str, prompt: str, schema: dict[str, Any]) -> None:
        nonlocal steered
        room = shortest_tokens(tokenizer, closer, schema) + 4
        async with limiter:
            generation = await runtime.generate(answer_request(prompt, schema, room, seed=3))
        steered += generation.truncated
        try:
            value = json.loads(generation.response)
        except ValueError:
            failures.append(f"{name} ({room} tokens): not JSON: {generation.response!r}")
            return
        if not jsonschema_rs.validator_for(schema).is_valid(value):
            failures.append(f"{name}: invalid: {generation.response}")
        if generation.truncated:
            assert generation.finish_reason == "length"
            assert generation.usage.completion_tokens <= room

    async with anyio.create_task_group() as group:
        for name, prompt, schema in guarantee_cases(tokenizer, closer):
            group.start_soon(one, name, prompt, schema)
    assert failures == []
    assert steered > 5  # with so little room most answers had to be ended early


async def test_a_budget_below_the_shortest_answer_is_refused_before_a_token(
    runtime: LlamaCpp,
) -> None:
    prompt, schema = ANSWER_SCHEMAS["pydantic-invoice"]
    with pytest.raises(RequestValidationError, match=r"max_tokens.*shortest value.*takes \d+"):
        await runtime.generate(answer_request(prompt, schema, 5, seed=1))


# -- the loop: a call ended early does not run ------------------------------------------------


async def test_a_call_ended_early_is_not_run_and_the_model_is_told() -> None:
    ran: list[str] = []

    @tool
    def save_note(text: str) -> str:
        """Save a note.

        Args:
            text: the note.
        """
        ran.append(text)
        return "saved"

    seen: list[list[Message]] = []

    def model(request: ModelRequest) -> Generation:
        seen.append(list(request.messages))
        if len(seen) == 1:  # the budget ran out: the runtime closed the string early
            call = ToolCall(name="save_note", arguments={"text": "Buy mi"})
            return Generation(tool_calls=[call], truncated=True, finish_reason="tool_calls")
        if len(seen) == 2:
            return Generation(tool_calls=[ToolCall(name="save_note", arguments={"text": "milk"})])
        return Generation(response="Saved.")

    result = await Agent(FunctionRuntime(model), tools=[save_note]).run("Note: buy milk")
    assert ran == ["milk"]  # the cut call never ran
    told = seen[1][-1]
    assert told.role == "tool" and "cut short to fit max_tokens" in told.content
    assert result.output == "Saved."
