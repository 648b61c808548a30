"""Endings: from any point of a grammar-held JSON answer, a short way to a complete, valid one
(what the local runtime writes when `max_tokens` is about to cut an answer)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import llama_cpp
import llguidance
import numpy as np
import pytest

from agentkit.chat_formats import engine as grammars
from agentkit.chat_formats._examples import shortest_match, string_examples
from agentkit.errors import SchemaGrammarError
from agentkit.runtimes._closing import Closer
from agentkit.runtimes._guidance import engine_tokenizer

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
