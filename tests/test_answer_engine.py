"""Structured answers on the grammar engine (llguidance): keywords the hand-written GBNF builder
refused or bounded (`pattern`, `format`, `multipleOf`, fractional bounds, `patternProperties`,
deep recursion) are held, and the embedded model's greedy answers fit them; the grammar as the
sampler holds it, token by token, one matcher per sequence of a batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema_rs
import llama_cpp
import numpy as np
import pytest

from agentkit import Message, SchemaGrammarError
from agentkit.chat_formats import answer, get_format
from agentkit.chat_formats import engine as grammars
from agentkit.model_api import Generation, ModelRequest
from agentkit.runtimes._guidance import GuidanceMatcher, engine_tokenizer
from agentkit.runtimes._sampling import Sampling, TokenSampler
from agentkit.runtimes.llama_cpp import LlamaCpp

from support.answer_schemas import ANSWER_SCHEMAS
from support.engine import grammar_accepts
from support.helpers import raw_llama

WORDS = ["one", "two", "three", "four", "five", "six"]
_CHAIN: dict[str, Any] = {
    "$defs": {
        "link": {
            "type": "object",
            "properties": {
                "word": {"enum": WORDS},
                "next": {"anyOf": [{"$ref": "#/$defs/link"}, {"type": "null"}]},
            },
            "required": ["word"],
        }
    },
    "$ref": "#/$defs/link",
}


def depth(chain: Any) -> int:
    return 0 if not isinstance(chain, dict) else 1 + depth(chain.get("next"))


NOW_HELD: dict[str, tuple[str, dict[str, Any]]] = {
    "pattern": (
        "Give the product code of the blue kettle: three capital letters, a dash, two digits.",
        {
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}},
            "required": ["code"],
        },
    ),
    "formats": (
        "Email bob@example.com about the meeting on 3 May 2024 at 10:30 UTC. "
        "Give the start, the email and a new id.",
        {
            "type": "object",
            "properties": {
                "start": {"type": "string", "format": "date-time"},
                # An address may be long: the bound makes its `@` come before max_tokens does.
                "email": {"type": "string", "format": "email", "maxLength": 40},
                "id": {"type": "string", "format": "uuid"},
            },
            "required": ["start", "email", "id"],
        },
    ),
    "multiple-of": (
        "A pizza costs 12.5 dollars and a drink 3 dollars. Give both prices.",
        {
            "type": "object",
            "properties": {
                "pizza": {"type": "number", "multipleOf": 0.25},
                "drink": {"type": "integer", "multipleOf": 3},
            },
            "required": ["pizza", "drink"],
        },
    ),
    "fractional-bounds": (
        "Two thirds of the class passed. What share passed?",
        {
            "type": "object",
            "properties": {"share": {"type": "number", "minimum": 0.25, "maximum": 0.75}},
            "required": ["share"],
        },
    ),
    "pattern-properties": (
        "The shop has 4 apples and 7 pears. Give the stock per fruit.",
        {
            "type": "object",
            "patternProperties": {"^[a-z]{2,10}$": {"type": "integer", "minimum": 0}},
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 4,
        },
    ),
    "deep-recursion": (
        "Write the words one, two, three, four, five and six as a chain of links.",
        _CHAIN,
    ),
}


def fmt(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": schema}


def fits(value: Any, schema: dict[str, Any]) -> bool:
    """Validation with the formats checked (`date-time`, `email`, `uuid`, ...)."""
    return bool(jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(value))


@pytest.fixture(scope="module")
def runtime(model_path: Path) -> Iterator[LlamaCpp]:
    # Recursion as deep as the model goes (by default it unfolds MAX_REF_DEPTH levels).
    local = LlamaCpp(model_path, parallel=3, answer_ref_depth=None)
    yield local
    anyio.run(local.aclose)


def accepts(
    vocabulary: tuple[Any, Any],
    schema: dict[str, Any],
    text: str,
    max_ref_depth: int | None = answer.MAX_REF_DEPTH,
) -> bool:
    """Whether the answer grammar lets the model write `text` and then end its turn."""
    grammar = grammars.engine_grammar(schema, max_ref_depth=max_ref_depth)
    return grammar_accepts(vocabulary, grammar, text)


# -- on the model ----------------------------------------------------------------------------


async def ask(runtime: LlamaCpp, name: str, **sampling: Any) -> Generation:
    """The model's answer to NOW_HELD[name]'s prompt, held to its schema."""
    prompt, schema = NOW_HELD[name]
    request = ModelRequest(messages=[Message.user(prompt)], response_format=fmt(schema), **sampling)
    return await runtime.generate(request)


@pytest.mark.parametrize("name", list(NOW_HELD))
async def test_a_keyword_the_builder_refused_is_held_and_the_answer_fits(
    runtime: LlamaCpp, name: str
) -> None:
    schema = NOW_HELD[name][1]
    runtime.check_response_format(fmt(schema), validated=False)  # nothing left to a validator
    generation = await ask(runtime, name, max_tokens=200, temperature=0.0)
    assert generation.finish_reason == "stop", generation.response
    value = json.loads(generation.response)
    assert fits(value, schema), generation.response
    if name == "deep-recursion":  # deeper than the GBNF builder unfolded references
        assert depth(value) > answer.MAX_REF_DEPTH, generation.response


async def test_sequences_of_one_batch_each_hold_their_own_grammar(runtime: LlamaCpp) -> None:
    names = ["pattern", "multiple-of", "pattern-properties"]
    responses: dict[str, str] = {}

    async def one(name: str) -> None:
        generation = await ask(runtime, name, max_tokens=120, temperature=0.8, seed=7)
        responses[name] = generation.response

    async with anyio.create_task_group() as group:
        for name in names:
            group.start_soon(one, name)
    for name in names:
        assert fits(json.loads(responses[name]), NOW_HELD[name][1]), (name, responses[name])


# -- the grammar, token by token -------------------------------------------------------------


def test_recursion_nests_as_deep_as_the_answer_goes_or_to_the_bound(
    vocabulary: tuple[Any, Any],
) -> None:
    chains: list[Any] = [None]
    for word in reversed(WORDS):
        chains.insert(0, {"word": word, "next": chains[0]})
    six, three = json.dumps(chains[0]), json.dumps(chains[3])
    assert accepts(vocabulary, _CHAIN, six, max_ref_depth=None)
    assert not accepts(vocabulary, _CHAIN, '{"word": "one", "next": {"word": "ten"}}', None)
    # By default, as deep as the GBNF grammars unfold references, and no deeper.
    assert depth(chains[3]) == answer.MAX_REF_DEPTH
    assert accepts(vocabulary, _CHAIN, three)
    assert not accepts(vocabulary, _CHAIN, six)
    assert accepts(vocabulary, _CHAIN, six, max_ref_depth=6)


def test_the_answer_is_written_in_one_style_with_the_declared_properties(
    vocabulary: tuple[Any, Any],
) -> None:
    _, person = ANSWER_SCHEMAS["flat-object"]
    person = {k: v for k, v in person.items() if k != "additionalProperties"}
    assert accepts(vocabulary, person, '{"name": "Ann", "age": 3}')
    assert not accepts(vocabulary, person, '{"name":"Ann","age":3}')
    assert not accepts(vocabulary, person, '{"name": "Ann",  "age": 3}')
    # Properties nobody declared are not written, unless the schema allows them.
    assert not accepts(vocabulary, person, '{"name": "Ann", "age": 3, "pet": "cat"}')
    open_person = {**person, "additionalProperties": True}
    assert accepts(vocabulary, open_person, '{"name": "Ann", "age": 3, "pet": "cat"}')


def test_closing_an_object_never_refuses_what_its_schema_requires(
    vocabulary: tuple[Any, Any],
) -> None:
    # A required key the properties do not declare may still be written, with any value.
    named = {"type": "object", "properties": {}, "required": ["top"]}
    assert accepts(vocabulary, named, '{"top": {"basic": "x"}}')
    assert not accepts(vocabulary, named, '{"top": 1, "other": 2}')
    # Two objects met by `allOf` through `$ref`s, each requiring a key of its own: closing
    # each would leave no value at all, so they are held as written.
    both = {
        "type": "object",
        "properties": {"value": {"allOf": [{"$ref": "#/$defs/a"}, {"$ref": "#/$defs/b"}]}},
        "required": ["value"],
        "$defs": {
            "a": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "b": {"type": "object", "properties": {"b": {"type": "number"}}, "required": ["b"]},
        },
    }
    assert accepts(vocabulary, both, '{"value": {"a": "x", "b": 1}}')
    assert not accepts(vocabulary, both, '{"value": {"a": "x"}}')


def test_an_object_its_all_of_parts_describe_is_closed_to_their_properties(
    vocabulary: tuple[Any, Any],
) -> None:
    parts: list[dict[str, Any]] = [
        {"properties": {"foo": {"type": "string"}}},
        {"properties": {"bar": {"type": "object"}}, "required": ["bar"]},
    ]
    together: dict[str, Any] = {"type": "object", "allOf": parts}
    assert accepts(vocabulary, together, '{"foo": "x", "bar": {}}')
    assert accepts(vocabulary, together, '{"bar": {"any": 1}}')
    # Not the schema's own keywords written as keys, nor a value the parts refuse.
    assert not accepts(vocabulary, together, '{"allOf": [], "bar": {}}')
    assert not accepts(vocabulary, together, '{"foo": 1, "bar": {}}')
    # A part that may bring any key (here by `$ref`) leaves the object open.
    opened = {
        **together,
        "allOf": [*parts, {"$ref": "#/$defs/any"}],
        "$defs": {"any": {"type": "object"}},
    }
    assert accepts(vocabulary, opened, '{"foo": "x", "bar": {}, "more": 1}')


def test_format_and_pattern_refuse_what_does_not_fit(vocabulary: tuple[Any, Any]) -> None:
    _, formats = NOW_HELD["formats"]
    good = {
        "start": "2024-05-03T10:30:00Z",
        "email": "bob@example.com",
        "id": "123e4567-e89b-12d3-a456-426614174000",
    }
    assert accepts(vocabulary, formats, json.dumps(good))
    assert not accepts(vocabulary, formats, json.dumps({**good, "start": "3 May 2024"}))
    assert not accepts(vocabulary, formats, json.dumps({**good, "email": "bob"}))
    assert not accepts(vocabulary, formats, json.dumps({**good, "id": "123"}))
    _, price = NOW_HELD["multiple-of"]
    assert accepts(vocabulary, price, '{"pizza": 12.75, "drink": 9}')
    assert not accepts(vocabulary, price, '{"pizza": 12.6, "drink": 9}')


def test_greedy_under_the_engine_takes_the_highest_logit_the_grammar_allows(
    model_path: Path,
) -> None:
    """The sampler asks the grammar about its own choice first and masks the vocabulary only
    when it is refused. Where the grammar forces text (`{"start": "`), llguidance's mask keeps
    only the canonical tokens of that text, while a check allows any token that stays within
    the grammar: so the reference here is not the masked argmax but what it means, the best
    token the grammar allows (or, after a refusal, the best its mask allows)."""
    llama = raw_llama(model_path, n_ctx=1024)
    tokenizer = engine_tokenizer(llama_cpp.llama_model_get_vocab(llama.model))
    chatml = get_format("chatml")
    try:
        for name in ("formats", "pattern-properties"):
            prompt, schema = NOW_HELD[name]
            grammar = grammars.answer_engine_grammar(fmt(schema))
            text = chatml.render(
                answer.with_instructions(chatml, [Message.user(prompt)], fmt(schema))
            )
            sampler = TokenSampler(llama.model, Sampling(), grammar, tokenizer=tokenizer)
            mirror = GuidanceMatcher(tokenizer, grammar)
            llama.reset()
            llama.eval(llama.tokenize(text.encode(), special=True))
            written: list[int] = []
            try:
                while len(written) < 150:
                    pointer = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
                    logits = np.ctypeslib.as_array(pointer, shape=(llama.n_vocab(),)).copy()
                    token = sampler.sample(llama.ctx, -1)
                    assert mirror.allowed(token), (name, written)
                    better = np.flatnonzero(logits > logits[token])
                    if any(mirror.allowed(int(t)) for t in better):
                        masked = logits.copy()
                        masked[~mirror.mask(len(logits))] = -np.inf
                        assert token == int(np.argmax(masked)), (name, written)
                    if token == llama.token_eos():
                        break
                    mirror.accept(token)
                    written.append(token)
                    llama.eval([token])
            finally:
                sampler.close()
            assert fits(json.loads(llama.detokenize(written)), schema), name
    finally:
        llama.close()


# -- refusals, before any request ------------------------------------------------------------


def test_a_keyword_the_engine_lacks_is_refused_by_name_and_path_unless_checked_after() -> None:
    schema = {
        "type": "object",
        "properties": {"size": {"type": "integer", "if": {"minimum": 5}, "then": {"maximum": 9}}},
    }
    grammars.check_engine_format(fmt(schema))  # an Agent validates every answer afterwards
    with pytest.raises(SchemaGrammarError) as caught:
        grammars.check_engine_format(fmt(schema), checked_after=False)
    assert caught.value.path == "$.size"
    assert caught.value.keyword in ("if", "then")


def test_a_reference_to_nowhere_and_a_recursion_without_end_are_refused() -> None:
    nowhere = {"type": "object", "properties": {"friend": {"$ref": "#/$defs/nobody"}}}
    with pytest.raises(SchemaGrammarError, match=r"\$\.friend: keyword '\$ref' points to nothing"):
        grammars.check_engine_format(fmt(nowhere))
    endless = {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]}
    with pytest.raises(SchemaGrammarError, match="allows no finite value"):
        grammars.check_engine_format(fmt(endless), max_ref_depth=None)
    with pytest.raises(SchemaGrammarError, match="nests its references at most 3 levels deep"):
        grammars.check_engine_format(fmt(endless))
    grammars.check_engine_format(fmt(_CHAIN))  # `null` ends the chain


def test_an_unknown_format_is_a_plain_string(vocabulary: tuple[Any, Any]) -> None:
    schema = {"type": "string", "format": "jsonpath"}
    grammars.check_engine_format(fmt(schema), checked_after=False)  # an annotation only
    assert accepts(vocabulary, schema, '"$.store.book[0]"')


def test_a_property_count_beside_optional_properties_is_left_to_the_validator(
    vocabulary: tuple[Any, Any],
) -> None:
    schema = {
        "type": "object",
        "properties": {"wait": {"type": "integer"}, "single": {"type": "boolean"}},
        "minProperties": 1,
    }
    assert accepts(vocabulary, schema, '{"wait": 60, "single": true}')
    with pytest.raises(SchemaGrammarError) as caught:
        grammars.check_engine_format(fmt(schema), checked_after=False)
    assert (caught.value.path, caught.value.keyword) == ("$", "minProperties")


def test_grammars_are_compiled_once_per_schema() -> None:
    _, schema = ANSWER_SCHEMAS["pydantic-invoice"]
    first = grammars.answer_engine_grammar(fmt(schema))
    assert grammars.answer_engine_grammar(fmt(dict(schema))) is first
    assert grammars.answer_engine_grammar(fmt(schema), checked_after=False) is not first
