"""JSON Schema -> GBNF: what the grammar lets through, checked by llama.cpp's own grammar engine,
and what the embedded model writes under it."""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.chat_formats import (
    SchemaGrammarError,
    get_format,
    schema_to_gbnf,
)
from agentkit.chat_formats.calls import MAX_DEPTH
from agentkit.chat_formats.grammar import MAX_DEPTH as GBNF_MAX_DEPTH
from agentkit.model_api import FunctionDefinition, ToolCall
from agentkit.tools import Tool
from agentkit.wire.workers_ai import GenerationRequest

from support.engine import Vocabulary, grammar_accepts, open_vocabulary
from support.environment import BFCL_DATA, require_bfcl

llama_cpp = pytest.importorskip("llama_cpp", reason="needs the local extra")

Accepts = Callable[[str, str], bool]


@pytest.fixture(scope="module")
def vocabulary(model_path: Path) -> Iterator[Vocabulary]:
    yield from open_vocabulary(model_path)


@pytest.fixture(scope="module")
def accepts(model_path: Path) -> Iterator[Accepts]:
    """`accepts(grammar, text)`: llama.cpp's grammar sampler lets `text` through, then the end."""
    vocab_model = llama_cpp.Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(vocab_model._model.model)
    end = vocab_model.token_eos()

    def check(grammar: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        assert sampler, f"llama.cpp refused the grammar:\n{grammar}"
        try:

            def allowed(token: int) -> bool:
                data = (llama_cpp.llama_token_data * 1)()
                data[0].id, data[0].logit, data[0].p = token, 0.0, 0.0
                array = llama_cpp.llama_token_data_array(
                    data=data, size=1, selected=-1, sorted=False
                )
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
                return bool(data[0].logit != -math.inf)

            tokens = vocab_model.tokenize(text.encode(), add_bos=False, special=False)
            assert vocab_model.detokenize(tokens) == text.encode(), f"cannot tokenize {text!r}"
            for token in tokens:
                if not allowed(token):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return allowed(end)
        finally:
            llama_cpp.llama_sampler_free(sampler)

    yield check
    vocab_model.close()


# -- what each keyword lets through ---------------------------------------------------------

CASES: list[tuple[str, dict[str, Any], list[Any], list[str]]] = [
    (
        "required and optional properties, in order",
        {
            "type": "object",
            "properties": {
                "a": {"type": "integer"},
                "b": {"type": "string"},
                "c": {"type": "boolean"},
            },
            "required": ["b"],
        },
        [{"b": "x"}, {"a": 1, "b": ""}, {"b": "y", "c": True}, {"a": -4, "b": "z", "c": False}],
        ['{"a": 1}', '{"b": "x", "a": 1}', '{"b": "x", "d": 1}', '{"b":"x"}', "{}"],
    ),
    (
        "no required properties",
        {"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "null"}}},
        [{}, {"a": None}, {"b": None}, {"a": None, "b": None}],
        ['{, "b": null}', '{"b": null, "a": null}'],
    ),
    (
        "additionalProperties schema",
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}},
            "additionalProperties": {"type": "string"},
        },
        [{}, {"id": 1}, {"id": 1, "k": "v"}, {"k": "v", "l": "w"}],
        ['{"k": 1}', '{"id": "1"}'],
    ),
    (
        "required names an undeclared property",
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "required": ["b"],
            "additionalProperties": {"type": "string"},
        },
        [{"b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": "x", "c": "y"}],
        ["{}", '{"a": 1}', '{"b": 1}', '{"a": 1, "b": "x", "b": "y"}'],
    ),
    (
        "free-form object with a required key",
        {"type": "object", "required": ["id"]},
        [{"id": 1}, {"id": "x", "y": [2]}],
        ["{}", '{"y": 2}'],
    ),
    (
        "enum values of another type than the schema's are left out",
        {"type": "string", "enum": ["a", 1]},
        ["a"],
        ["1"],
    ),
    (
        "free-form object",
        {"type": "object"},
        [{}, {"a": [1, {"b": None}], "c": "d"}],
        ["[]", '"x"'],
    ),
    (
        "string escapes and lengths",
        {"type": "string", "minLength": 2, "maxLength": 4},
        ["ab", 'a"b', "a\\b\n", "é\tü"],
        ['"a"', '"abcde"', '"a\nb"', '"\\x"'],
    ),
    (
        "string formats",
        {
            "type": "object",
            "properties": {
                "d": {"type": "string", "format": "date"},
                "t": {"type": "string", "format": "date-time"},
                "u": {"type": "string", "format": "uuid"},
                "e": {"type": "string", "format": "email"},
            },
        },
        [
            {"d": "2024-07-26"},
            {"t": "2024-07-26T14:05:00Z"},
            {"u": "123e4567-e89b-12d3-a456-426614174000"},
            {"e": "x"},
        ],
        ['{"d": "26 Jul 2024"}', '{"t": "2024-07-26"}', '{"u": "nope"}'],
    ),
    (
        "enum and const of any JSON value",
        {"anyOf": [{"enum": ["a", 1, None, [1, 2], {"k": True}]}, {"const": 2.5}]},
        ["a", 1, None, [1, 2], {"k": True}, 2.5],
        ['"b"', "2", "[1]", "true"],
    ),
    (
        "type lists share their siblings",
        {"type": ["integer", "string", "null"], "maxLength": 1, "minimum": 0},
        [0, 7, "x", "", None],
        ["-1", '"xy"', "1.5", "true"],
    ),
    (
        "integer bounds",
        {"type": "integer", "minimum": -12, "exclusiveMaximum": 100},
        [-12, -1, 0, 9, 10, 99],
        ["-13", "100", "1.0", "05"],
    ),
    (
        "number bounds",
        {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
        [0.5, 1, 9.99, 10, 0.001],
        ["0", "-0.5", "10.5", "0.0", "1e3"],
    ),
    (
        "numbers",
        {"type": "array", "items": {"type": "number"}},
        [[0, -1.5, 3.25e-2, 1e10, 12345678]],
        ["[01]", "[1.]", "[.5]", "[NaN]"],
    ),
    (
        "array bounds",
        {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
        [[True], [True, False, True]],
        ["[]", "[true, true, true, true]", '["true"]'],
    ),
    (
        "prefixItems",
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
        [["a", 1]],
        ['[1, "a"]', '["a"]', '["a", 1, 2]'],
    ),
    (
        "oneOf and nested objects",
        {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
                    "required": ["kind", "r"],
                },
                {
                    "type": "object",
                    "properties": {"kind": {"const": "square"}, "side": {"type": "number"}},
                    "required": ["kind", "side"],
                },
            ]
        },
        [{"kind": "circle", "r": 1}, {"kind": "square", "side": 2.5}],
        ['{"kind": "circle", "side": 1}', '{"kind": "oval", "r": 1}'],
    ),
    (
        "recursive $ref",
        {
            "$defs": {
                "Node": {
                    "type": "object",
                    "properties": {
                        "v": {"type": "integer"},
                        "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    },
                    "required": ["v"],
                }
            },
            "$ref": "#/$defs/Node",
        },
        [{"v": 1}, {"v": 1, "kids": [{"v": 2, "kids": []}, {"v": 3}]}],
        ['{"v": 1, "kids": [{}]}', '{"kids": []}'],
    ),
    (
        "recursive $ref beside other keywords",
        {
            "$defs": {
                "Node": {
                    "type": "object",
                    "properties": {
                        "v": {"type": "integer"},
                        "next": {"$ref": "#/$defs/Node", "required": ["v"]},
                    },
                }
            },
            "$ref": "#/$defs/Node",
        },
        [{}, {"v": 1, "next": {"v": 2, "next": {"v": 3}}}],
        ['{"v": 1, "next": {}}', '{"next": {"v": 2, "next": {}}}'],
    ),
    (
        "allOf parts that do not overlap",
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}},
                {"required": ["a"]},
            ]
        },
        [{"a": 1}],
        ["{}"],
    ),
    (
        "any value",
        {},
        [None, 1, "s", [], {"a": [True, 1.5]}],
        ["", "{", "nul", "'s'"],
    ),
]


@pytest.mark.parametrize(("what", "schema", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_the_grammar_allows_exactly_what_the_schema_allows(
    accepts: Accepts, what: str, schema: dict[str, Any], good: list[Any], bad: list[str]
) -> None:
    grammar = schema_to_gbnf(schema)
    for value in good:
        jsonschema.validate(value, schema)  # the examples themselves are right
        text = json.dumps(value, ensure_ascii=False)
        assert accepts(grammar, text), f"{what}: refused {text}\n{grammar}"
    for text in bad:
        assert not accepts(grammar, text), f"{what}: let through {text}\n{grammar}"


@settings(max_examples=60, deadline=None)
@given(
    low=st.integers(-(10**6), 10**6),
    width=st.integers(0, 10**5),
    probes=st.lists(st.integers(-2 * 10**6, 2 * 10**6), min_size=1, max_size=4),
)
def test_integer_ranges_hold_exactly(
    accepts: Accepts, low: int, width: int, probes: list[int]
) -> None:
    high = low + width
    grammar = schema_to_gbnf({"type": "integer", "minimum": low, "maximum": high})
    for value in [low, high, low - 1, high + 1, *probes]:
        assert accepts(grammar, str(value)) == (low <= value <= high), (value, low, high)


# Characters the vocabulary can spell (it has no byte tokens for unassigned code points).
_text = st.text(st.characters(exclude_categories=("Cs", "Cn", "Co")), max_size=6)
_any_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15), 10**15) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(_any_json)
def test_the_any_schema_takes_any_json_value(accepts: Accepts, value: Any) -> None:
    assert accepts(schema_to_gbnf({}), json.dumps(value, ensure_ascii=False))


# -- keywords a grammar cannot hold ---------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}}},
            "$.code: keyword 'pattern' cannot be held by a grammar",
        ),
        (
            {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
            "$: keyword 'uniqueItems'",
        ),
        (
            {"type": "number", "minimum": 0.5},
            "$.minimum: keyword 'minimum' 0.5: a grammar holds number bounds only when they are",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}},
            "$.a: keyword '$ref' '#/$defs/Missing' points to no local definition",
        ),
        (
            {"type": "object", "properties": {"a": False}},
            "$.a: keyword 'false' allows no value at all",
        ),
        ({"type": "dict"}, "$: keyword 'type' unknown type \"dict\""),
        (
            {"allOf": [{"type": "string"}, {"type": "integer"}]},
            "$.allOf[1]: keyword 'allOf' cannot be merged: ['type']",
        ),
    ],
)
def test_what_cannot_be_held_is_refused_by_name_and_path(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(SchemaGrammarError) as caught:
        schema_to_gbnf(schema)
    assert str(caught.value).startswith(message)


def nested(depth: int) -> dict[str, Any]:
    """An object schema with properties in properties, `depth` levels down."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def test_a_schema_nested_too_deep_is_refused_with_its_path() -> None:
    with pytest.raises(SchemaGrammarError) as caught:
        schema_to_gbnf(nested(400))
    assert caught.value.path == "$" + ".a" * GBNF_MAX_DEPTH
    assert str(caught.value).endswith(f"keyword 'schema' nests deeper than {GBNF_MAX_DEPTH} levels")


def test_a_schema_nested_up_to_the_bound_is_held(accepts: Accepts) -> None:
    schema = nested(GBNF_MAX_DEPTH - 1)
    value: Any = "x"
    for _ in range(GBNF_MAX_DEPTH - 1):
        value = {"a": value}
    assert accepts(schema_to_gbnf(schema), json.dumps(value))


def test_a_property_name_longer_than_the_recursion_limit_is_held(accepts: Accepts) -> None:
    long_name = "a" * 3000
    schema = {"type": "object", "properties": {long_name: {"type": "string"}}}
    grammar = schema_to_gbnf({**schema, "additionalProperties": {"type": "integer"}})
    assert accepts(grammar, '{"b": 1}')
    assert not accepts(grammar, '{"b": "x"}')


_BOUNDED: dict[str, tuple[dict[str, Any], str]] = {
    "Length": ({"type": "string"}, '"ab"'),
    "Items": ({"type": "array", "items": {"type": "integer"}}, "[1, 2]"),
    "Properties": ({"type": "object", "additionalProperties": {"type": "integer"}}, '{"a": 1}'),
}


@pytest.mark.parametrize(
    ("side", "kind", "bound"),
    [
        ("max", "Length", 999_999),
        ("max", "Length", 1_000_000),
        ("min", "Length", 999_999),
        ("min", "Length", 1_000_000),
        ("max", "Items", 666_667),
        ("max", "Items", 999_999),
        ("max", "Items", 1_000_000),
    ],
)
def test_llama_cpp_takes_the_grammar_of_any_bound_up_to_a_million(
    accepts: Accepts, side: str, kind: str, bound: int
) -> None:
    # llama.cpp refuses a repetition of a group whose helper rules times the count pass 2000
    # (and a `?` counts once): the bounded value sits in an optional property.
    schema, sample = _BOUNDED[kind]
    wrapped = {"type": "object", "properties": {"x": {**schema, f"{side}{kind}": bound}}}
    grammar = schema_to_gbnf(wrapped)
    assert accepts(grammar, f'{{"x": {sample}}}' if side == "max" else "{}")
    assert accepts(schema_to_gbnf({**schema, f"{side}{kind}": bound}), sample) == (side == "max")


def test_checked_after_keeps_the_rest_of_the_schema(accepts: Accepts) -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
        "required": ["code"],
    }
    grammar = schema_to_gbnf(schema, checked_after=True)
    assert accepts(grammar, '{"code": "abcd"}')  # the pattern is left to the validator
    assert not accepts(grammar, '{"code": 3}')
    assert not accepts(grammar, "{}")


def test_a_fractional_number_bound_is_refused_unless_checked_after(accepts: Accepts) -> None:
    # What pydantic writes for Field(ge=0.5, lt=9.5).
    schema = {"type": "number", "minimum": 0.5, "exclusiveMaximum": 9.5}
    with pytest.raises(SchemaGrammarError, match=r"\$.minimum: keyword 'minimum' 0.5"):
        schema_to_gbnf(schema)
    grammar = schema_to_gbnf(schema, checked_after=True)
    for inside in ("0.5", "3", "9.25"):
        assert accepts(grammar, inside)
    assert accepts(grammar, "0.25")  # within the whole bounds around it: the validator's part
    for outside in ("-1", "11", "10.5"):
        assert not accepts(grammar, outside)


def test_unknown_keywords_are_annotations(accepts: Accepts) -> None:
    # BFCL writes "optional": true; JSON Schema ignores keywords it does not define.
    grammar = schema_to_gbnf(
        {"type": "object", "properties": {"a": {"type": "integer", "optional": True}}}
    )
    assert accepts(grammar, '{"a": 1}')
    assert not accepts(grammar, '{"a": "1"}')


# -- call grammars --------------------------------------------------------------------------

WEATHER = FunctionDefinition(
    name="get_weather",
    description="Weather of a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)
TIME = FunctionDefinition(
    name="get_time",
    description="Time in a zone.",
    parameters={
        "type": "object",
        "properties": {"tz": {"enum": ["CET", "UTC"]}},
        "required": ["tz"],
    },
)
PARIS = ToolCall(name="get_weather", arguments={"city": "Paris"})
CET = ToolCall(name="get_time", arguments={"tz": "CET"})


@pytest.mark.parametrize("name", ["llama3", "chatml"])
def test_a_call_grammar_writes_calls_as_the_prompt_shows_them(
    vocabulary: Vocabulary, name: str
) -> None:
    fmt = get_format(name)
    tools = [WEATHER, TIME]
    one = fmt.call_grammar(tools, parallel=False)
    several = fmt.call_grammar(tools)
    assert grammar_accepts(vocabulary, one, fmt.call_text([PARIS]))
    assert fmt.call_text([PARIS]).startswith(fmt.call_trigger)
    assert not grammar_accepts(vocabulary, one, fmt.call_text([PARIS, CET]))
    assert grammar_accepts(vocabulary, several, fmt.call_text([PARIS, CET]))
    assert grammar_accepts(vocabulary, several, fmt.call_text([CET] * 8))
    assert not grammar_accepts(
        vocabulary, several, fmt.call_text([CET] * 9)
    )  # a bounded number of calls
    assert not grammar_accepts(
        vocabulary, one, fmt.call_text([ToolCall(name="get_time", arguments={"tz": "PST"})])
    )
    assert not grammar_accepts(
        vocabulary, one, fmt.call_text([ToolCall(name="get_news", arguments={})])
    )
    only_time = fmt.call_grammar(tools, "get_time")
    assert grammar_accepts(vocabulary, only_time, fmt.call_text([CET]))
    assert not grammar_accepts(vocabulary, only_time, fmt.call_text([PARIS]))


def test_call_grammars_normalize_sloppy_schemas(vocabulary: Vocabulary) -> None:
    sloppy = FunctionDefinition(
        name="area",
        parameters={
            "type": "dict",
            "properties": {"base": {"type": "float"}},
            "required": ["base"],
        },
    )
    fmt = get_format("chatml")
    grammar = fmt.call_grammar([sloppy])
    assert grammar_accepts(
        vocabulary, grammar, fmt.call_text([ToolCall(name="area", arguments={"base": 2.5})])
    )
    assert not grammar_accepts(
        vocabulary, grammar, fmt.call_text([ToolCall(name="area", arguments={"base": "2.5"})])
    )


def test_every_bfcl_simple_function_converts(accepts: Accepts) -> None:
    require_bfcl()
    source = BFCL_DATA / "BFCL_v4_simple_python.json"
    count = 0
    for line in source.read_text().splitlines():
        for definition in json.loads(line)["function"]:
            tool = Tool.from_definition(definition)
            grammar = schema_to_gbnf(tool.parameters_schema("inline"))
            assert llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
            # It constrains: an argument no schema declares is refused.
            assert not accepts(grammar, '{"not_a_parameter": 1}'), tool.name
            count += 1
    assert count == 400


# -- the embedded model under the grammar ---------------------------------------------------

MODEL_SCHEMAS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "Convert 100 dollars to euros.",
        "convert_currency",
        {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "minimum": 0, "maximum": 1000000},
                "source": {"enum": ["USD", "EUR", "GBP"]},
                "target": {"enum": ["USD", "EUR", "GBP"]},
            },
            "required": ["amount", "source", "target"],
        },
    ),
    (
        "Book a table for 4 people at Luigi's tonight.",
        "book_table",
        {
            "type": "object",
            "properties": {
                "restaurant": {"type": "string", "maxLength": 20},
                "party": {
                    "type": "object",
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 20},
                        "child_seats": {"type": "integer", "minimum": 0, "maximum": 5},
                    },
                    "required": ["size"],
                },
                "note": {"type": "string", "maxLength": 20},
            },
            "required": ["restaurant", "party"],
        },
    ),
    (
        "Add milk, eggs and bread to my shopping list.",
        "add_items",
        {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {"type": "string", "maxLength": 12},
                    "minItems": 1,
                    "maxItems": 4,
                },
                "urgent": {"type": "boolean"},
            },
            "required": ["items"],
        },
    ),
]


@pytest.mark.parametrize(
    ("question", "tool_name", "schema"), MODEL_SCHEMAS, ids=[s[1] for s in MODEL_SCHEMAS]
)
async def test_the_embedded_model_writes_valid_calls_under_the_grammar(
    local: Any, question: str, tool_name: str, schema: dict[str, Any]
) -> None:
    tool = FunctionDefinition(
        name=tool_name, description=question.split(" ", 1)[0], parameters=schema
    )
    for seed in (7, 1234):
        request = GenerationRequest.build(
            messages=[{"role": "user", "content": question}],
            tools=[tool],
            tool_choice="required",
            parallel_tool_calls=False,
            temperature=1.5,
            seed=seed,
            max_tokens=90,
        )
        generation = await local.generate(request)
        assert generation.finish_reason == "tool_calls", f"cut off: {generation.response!r}"
        assert generation.response == ""
        assert [c.name for c in generation.tool_calls] == [tool_name]
        jsonschema.validate(generation.tool_calls[0].arguments, schema)


# -- through the local runtime --------------------------------------------------------------

LINKED = {
    "type": "object",
    "properties": {"head": {"$ref": "#/$defs/Node"}},
    "required": ["head"],
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "v": {"type": "integer"},
                "next": {"$ref": "#/$defs/Node", "required": ["v"]},
            },
            "required": ["v"],
        }
    },
}


@pytest.fixture(scope="module")
def local(model_path: Path) -> Iterator[Any]:
    from agentkit.runtimes.llama_cpp import LlamaCpp

    runtime = LlamaCpp(model_path)
    yield runtime
    anyio.run(runtime.aclose)


async def test_the_local_runtime_calls_a_tool_with_a_recursive_ref(local: Any) -> None:
    walk = {"name": "walk", "description": "Walk a linked list.", "parameters": LINKED}
    tool = Tool.from_definition(walk)
    request = GenerationRequest.build(
        messages=[{"role": "user", "content": "Walk the list that holds only the number 5."}],
        tools=[tool.definition()],
        tool_choice="required",
        temperature=0,
        max_tokens=120,
    )
    generation = await local.generate(request)
    assert generation.finish_reason == "tool_calls", generation.response
    (call,) = generation.tool_calls
    assert call.name == "walk"
    tool.validate(call.arguments)  # raises ToolArgumentsError if not valid


async def test_the_local_runtime_refuses_a_schema_nested_too_deep_by_its_path(local: Any) -> None:
    # As a request brings it (`Tool.from_definition` refuses it already: see test_tools.py).
    parameters = {"type": "object", "properties": {"a": nested(400)}}
    deep = FunctionDefinition(name="deep", description="Deep.", parameters=parameters)
    request = GenerationRequest.build(
        messages=[{"role": "user", "content": "Go deep."}],
        tools=[deep],
        tool_choice="required",
        max_tokens=8,
    )
    with pytest.raises(SchemaGrammarError) as caught:
        await local.generate(request)
    assert caught.value.path == "deep.parameters" + ".a" * MAX_DEPTH


# -- counts past llama.cpp's repetition limit, dictionaries, nullable -------------------------


def test_counts_past_llama_cpps_repetition_limit_are_held_exactly(accepts: Accepts) -> None:
    # llama.cpp refuses `x{0,2600}` outright; the builder writes it in blocks.
    text = schema_to_gbnf({"type": "string", "minLength": 1500, "maxLength": 2600})
    for size, fits in ((1499, False), (1500, True), (2000, True), (2600, True), (2601, False)):
        assert accepts(text, json.dumps("ab" * (size // 2) + "c" * (size % 2))) is fits, size
    items = schema_to_gbnf({"type": "array", "items": {"type": "integer"}, "maxItems": 2100})
    for size, fits in ((0, True), (1, True), (2100, True), (2101, False)):
        assert accepts(items, json.dumps([7] * size)) is fits, size


def test_a_dictionary_holds_its_size_bounds(accepts: Accepts) -> None:
    text = schema_to_gbnf(
        {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "minProperties": 1,
            "maxProperties": 2,
        }
    )
    assert not accepts(text, "{}")
    assert accepts(text, '{"a": 1}') and accepts(text, '{"a": 1, "b": 2}')
    assert not accepts(text, '{"a": 1, "b": 2, "c": 3}')
    with pytest.raises(SchemaGrammarError, match="maxProperties"):
        schema_to_gbnf({"type": "object", "properties": {"a": {}}, "maxProperties": 1})


def test_nullable_true_adds_null(accepts: Accepts) -> None:
    text = schema_to_gbnf({"type": "string", "maxLength": 3, "nullable": True})
    assert accepts(text, "null") and accepts(text, '"abc"') and not accepts(text, '"abcd"')


def test_all_of_parts_join_their_properties_unless_extras_are_closed_elsewhere() -> None:
    joined = schema_to_gbnf(
        {
            "type": "object",
            "allOf": [
                {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
            ],
        }
    )
    assert '"\\"a\\": "' in joined and '"\\"b\\": "' in joined
    with pytest.raises(SchemaGrammarError, match="additionalProperties applies"):
        schema_to_gbnf(
            {"additionalProperties": False, "allOf": [{"properties": {"a": {"type": "integer"}}}]}
        )
