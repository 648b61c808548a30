"""Functions to tools: schemas in every shape and dialect, docstrings, validation, repairs."""

from __future__ import annotations

import dataclasses
import enum
import warnings
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inline_snapshot import snapshot
from pydantic import BaseModel, Field, TypeAdapter
from typing_extensions import TypedDict

from agentkit import (
    Agent,
    FunctionRuntime,
    Generation,
    SchemaGrammarError,
    Tool,
    ToolArgumentsError,
    ToolDefinitionError,
    ToolDefinitionWarning,
    Toolset,
    tool,
    validate_tool_definitions,
)
from agentkit.chat_formats import check_tool_schemas
from agentkit.wire import GenerationRequest

from support.helpers import check_schema


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Place(BaseModel):
    city: str = Field(description="City name")
    country: str | None = Field(default=None, description="ISO country code")


@dataclasses.dataclass
class Window:
    start: date
    days: int = 1


class Tag(TypedDict):
    key: str
    value: str


def forecast(
    place: Place,
    unit: Unit = Unit.CELSIUS,
    days: Annotated[int, Field(ge=1, le=7, description="Days ahead")] = 1,
    note: str | None = None,
) -> str:
    """Weather forecast for a place.

    Args:
        place: Where.
        unit: Temperature unit.
        note: Free text, or null.
    """
    return ""


def test_decorated_function_stays_callable() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add.

        Args:
            a: First.
            b: Second.
        """
        return a + b

    @tool(name="mul", description="Multiply.")
    async def multiply(a: int, b: int) -> int:
        """Ignored.

        Args:
            a: First.
            b: Second.
        """
        return a * b

    assert add(2, 3) == 5
    # The tool keeps the function's attributes, copied at run time: its class declares none.
    assert add.__name__ == "add"  # type: ignore[attr-defined]
    assert isinstance(add, Tool) and not add.is_async
    assert multiply.name == "mul" and multiply.description == "Multiply." and multiply.is_async


async def test_async_tool_is_awaitable() -> None:
    @tool
    async def echo(text: str) -> str:
        """Echo.

        Args:
            text: Text.
        """
        return text

    assert await echo("hi") == "hi"


def test_both_shapes_full_dialect() -> None:
    made = tool(forecast)
    assert made.to_legacy() == snapshot(
        {
            "name": "forecast",
            "description": "Weather forecast for a place.",
            "parameters": {
                "$defs": {
                    "Place": {
                        "properties": {
                            "city": {"description": "City name", "type": "string"},
                            "country": {
                                "anyOf": [{"type": "string"}, {"type": "null"}],
                                "default": None,
                                "description": "ISO country code",
                            },
                        },
                        "required": ["city"],
                        "type": "object",
                    },
                    "Unit": {"enum": ["celsius", "fahrenheit"], "type": "string"},
                },
                "additionalProperties": False,
                "properties": {
                    "place": {"$ref": "#/$defs/Place", "description": "Where."},
                    "unit": {
                        "$ref": "#/$defs/Unit",
                        "default": "celsius",
                        "description": "Temperature unit.",
                    },
                    "days": {
                        "default": 1,
                        "description": "Days ahead",
                        "maximum": 7,
                        "minimum": 1,
                        "type": "integer",
                    },
                    "note": {
                        "anyOf": [{"type": "string"}, {"type": "null"}],
                        "default": None,
                        "description": "Free text, or null.",
                    },
                },
                "required": ["place"],
                "type": "object",
            },
        }
    )
    assert made.to_function()["type"] == "function"
    assert made.to_function()["function"] == made.to_legacy()


def test_inline_dialect_has_no_refs_and_a_type_and_description_everywhere() -> None:
    made = tool(forecast)
    assert made.to_function("inline") == snapshot(
        {
            "type": "function",
            "function": {
                "name": "forecast",
                "description": "Weather forecast for a place.",
                "parameters": {
                    "additionalProperties": False,
                    "properties": {
                        "place": {
                            "properties": {
                                "city": {"description": "City name", "type": "string"},
                                "country": {
                                    "anyOf": [{"type": "string"}, {"type": "null"}],
                                    "default": None,
                                    "description": "ISO country code",
                                    "type": ["string", "null"],
                                },
                            },
                            "required": ["city"],
                            "type": "object",
                            "description": "Where.",
                        },
                        "unit": {
                            "enum": ["celsius", "fahrenheit"],
                            "type": "string",
                            "default": "celsius",
                            "description": "Temperature unit.",
                        },
                        "days": {
                            "default": 1,
                            "description": "Days ahead",
                            "maximum": 7,
                            "minimum": 1,
                            "type": "integer",
                        },
                        "note": {
                            "anyOf": [{"type": "string"}, {"type": "null"}],
                            "default": None,
                            "description": "Free text, or null.",
                            "type": ["string", "null"],
                        },
                    },
                    "required": ["place"],
                    "type": "object",
                },
            },
        }
    )
    params = made.parameters_schema("inline")
    assert "$defs" not in params and "$ref" not in str(params)
    for prop in params["properties"].values():
        assert "type" in prop and prop["description"]


def test_gallery_of_types() -> None:
    def everything(
        text: str,
        count: int,
        ratio: float,
        flag: bool,
        mode: Literal["fast", "slow"],
        unit: Unit,
        items: list[int],
        pair: tuple[str, int],
        unique: set[str],
        scores: dict[str, float],
        window: Window,
        tag: Tag,
        when: datetime,
        ident: UUID,
        maybe: int | None,
        later: int = 3,
    ) -> None:
        """Every type.

        Args:
            text: t. count: c.
            count: c.
            ratio: r.
            flag: f.
            mode: m.
            unit: u.
            items: i.
            pair: p.
            unique: q.
            scores: s.
            window: w.
            tag: g.
            when: d.
            ident: i.
            maybe: accepts null but must be given.
            later: may be omitted.
        """

    made = tool(everything)
    schema = made.parameters_schema()
    assert schema == snapshot(
        {
            "$defs": {
                "Tag": {
                    "additionalProperties": False,
                    "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
                    "required": ["key", "value"],
                    "type": "object",
                },
                "Unit": {"enum": ["celsius", "fahrenheit"], "type": "string"},
                "Window": {
                    "additionalProperties": False,
                    "properties": {
                        "start": {"format": "date", "type": "string"},
                        "days": {"default": 1, "type": "integer"},
                    },
                    "required": ["start"],
                    "type": "object",
                },
            },
            "additionalProperties": False,
            "properties": {
                "text": {"description": "t. count: c.", "type": "string"},
                "count": {"description": "c.", "type": "integer"},
                "ratio": {"description": "r.", "type": "number"},
                "flag": {"description": "f.", "type": "boolean"},
                "mode": {"description": "m.", "enum": ["fast", "slow"], "type": "string"},
                "unit": {"$ref": "#/$defs/Unit", "description": "u."},
                "items": {"description": "i.", "items": {"type": "integer"}, "type": "array"},
                "pair": {
                    "description": "p.",
                    "maxItems": 2,
                    "minItems": 2,
                    "prefixItems": [{"type": "string"}, {"type": "integer"}],
                    "type": "array",
                },
                "unique": {
                    "description": "q.",
                    "items": {"type": "string"},
                    "type": "array",
                    "uniqueItems": True,
                },
                "scores": {
                    "additionalProperties": {"type": "number"},
                    "description": "s.",
                    "type": "object",
                },
                "window": {"$ref": "#/$defs/Window", "description": "w."},
                "tag": {"$ref": "#/$defs/Tag", "description": "g."},
                "when": {"description": "d.", "format": "date-time", "type": "string"},
                "ident": {"description": "i.", "format": "uuid", "type": "string"},
                "maybe": {
                    "anyOf": [{"type": "integer"}, {"type": "null"}],
                    "description": "accepts null but must be given.",
                },
                "later": {"default": 3, "description": "may be omitted.", "type": "integer"},
            },
            "required": [
                "text",
                "count",
                "ratio",
                "flag",
                "mode",
                "unit",
                "items",
                "pair",
                "unique",
                "scores",
                "window",
                "tag",
                "when",
                "ident",
                "maybe",
            ],
            "type": "object",
        }
    )
    # "May be omitted" and "accepts null" stay two different things.
    assert "maybe" in schema["required"] and "later" not in schema["required"]
    assert {"type": "null"} in schema["properties"]["maybe"]["anyOf"]


@pytest.mark.parametrize("style", ["google", "numpy", "sphinx"])
def test_docstring_styles(style: str) -> None:
    docs = {
        "google": "Find a book.\n\nArgs:\n    title: The title.\n    year: The year.\n",
        "numpy": "Find a book.\n\nParameters\n----------\ntitle : str\n    The title.\n"
        "year : int\n    The year.\n",
        "sphinx": "Find a book.\n\n:param title: The title.\n:param year: The year.\n",
    }

    def find(title: str, year: int = 2000) -> str:
        return title

    find.__doc__ = docs[style]
    made = tool(find)
    assert made.description == "Find a book."
    props = made.parameters_schema()["properties"]
    assert (props["title"]["description"], props["year"]["description"]) == (
        "The title.",
        "The year.",
    )


def test_warnings_name_missing_and_unknown_parameters() -> None:
    def f(a: int, b: int) -> int:
        """Do it.

        Args:
            a: A.
            c: Not a parameter.
        """
        return a

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tool(f)
    messages = [str(w.message) for w in caught if w.category is ToolDefinitionWarning]
    assert any("do not exist: c" in m for m in messages)
    assert any("no description for parameter(s) b" in m for m in messages)


def test_bad_signatures_fail_at_decoration() -> None:
    def star(*args: int) -> None:
        """S."""

    with pytest.raises(ToolDefinitionError, match="args: \\*args and \\*\\*kwargs"):
        tool(star)

    class Opaque:
        pass

    def opaque(thing: Opaque) -> None:
        """O.

        Args:
            thing: T.
        """

    with pytest.raises(ToolDefinitionError, match="opaque"):
        tool(opaque)


def test_strict_dialect_and_report() -> None:
    made = tool(forecast)
    report = made.strict_report()
    assert any(r.startswith("unit: may be omitted") for r in report)
    with pytest.raises(ToolDefinitionError, match="cannot be strict"):
        made.to_function("strict")
    with pytest.raises(ToolDefinitionError, match="days: may be omitted"):
        tool(strict=True)(forecast)

    @tool(strict=True)
    def book(title: str, year: int | None) -> str:
        """Book.

        Args:
            title: Title.
            year: Year, or null.
        """
        return title

    assert book.to_function("strict") == snapshot(
        {
            "type": "function",
            "function": {
                "name": "book",
                "description": "Book.",
                "parameters": {
                    "additionalProperties": False,
                    "properties": {
                        "title": {"description": "Title.", "type": "string"},
                        "year": {
                            "anyOf": [{"type": "integer"}, {"type": "null"}],
                            "description": "Year, or null.",
                        },
                    },
                    "required": ["title", "year"],
                    "type": "object",
                },
                "strict": True,
            },
        }
    )


def test_validation_coerces_to_python_values() -> None:
    made = tool(forecast)
    values = made.validate({"place": {"city": "Paris"}, "unit": "fahrenheit", "days": "3"}).values
    assert values == {
        "place": Place(city="Paris"),
        "unit": Unit.FAHRENHEIT,
        "days": 3,
        "note": None,
    }


def test_validation_errors_list_every_field_with_its_path() -> None:
    made = tool(forecast)
    with pytest.raises(ToolArgumentsError) as info:
        made.validate('{"place": {"country": 5}, "days": 9, "extra": true}')
    assert [str(e) for e in info.value.errors] == [
        "place.city: is required",
        "place.country: input should be a valid string (got 5)",
        "days: must be <= 7 (got 9)",
        "extra: is not a known field (got true)",
    ]
    assert info.value.raw == '{"place": {"country": 5}, "days": 9, "extra": true}'


def test_unknown_keys_are_refused_and_omitted_parameters_get_their_defaults() -> None:
    made = tool(forecast)
    with pytest.raises(ToolArgumentsError) as info:
        made.validate({"place": {"city": "Paris"}, "hours": 5})
    assert [str(e) for e in info.value.errors] == ["hours: is not a known field (got 5)"]
    assert made.validate({"place": {"city": "Paris"}}).values == {
        "place": Place(city="Paris"),
        "unit": Unit.CELSIUS,
        "days": 1,
        "note": None,
    }


def test_mutable_defaults_are_fresh_for_every_call() -> None:
    def tag(labels: list[str] = ["new"]) -> list[str]:  # noqa: B006
        """Tag.

        Args:
            labels: Labels.
        """
        return labels

    made = tool(tag)
    first, second = made.validate({}).values, made.validate({}).values
    assert first == second == {"labels": ["new"]}
    first["labels"].append("changed")
    assert made.validate({}).values == {"labels": ["new"]}


def test_parameters_may_be_named_like_model_attributes() -> None:
    def odd(model_config: int, schema: str = "x", _hidden: bool = False) -> str:
        """Odd names.

        Args:
            model_config: A number.
            schema: A label.
            _hidden: A flag.
        """
        return schema

    made = tool(odd)
    assert list(made.parameters_schema()["properties"]) == ["model_config", "schema", "_hidden"]
    values = made.validate({"model_config": "3", "_hidden": True}).values
    assert values == {"model_config": 3, "schema": "x", "_hidden": True}
    assert made(**values) == "x"


@pytest.mark.parametrize(
    ("text", "repairs"),
    [
        ('```json\n{"place": {"city": "Rome"}}\n```', ("removed a code fence",)),
        ('{"place": {"city": "Rome"},}', ("removed trailing commas",)),
        ("{'place': {'city': 'Rome'}, 'note': None}", ("read Python literal syntax",)),
        ('"{\\"place\\": {\\"city\\": \\"Rome\\"}}"', ("decoded a JSON object given as a string",)),
        ('Sure! {"place": {"city": "Rome"}} Done.', ("cut text around the JSON object",)),
    ],
)
def test_near_json_is_repaired_and_the_repair_recorded(text: str, repairs: tuple[str]) -> None:
    result = tool(forecast).validate(text)
    assert result.values["place"] == Place(city="Rome")
    assert result.repairs[0].startswith(repairs[0])


def test_hopeless_text_is_an_error() -> None:
    with pytest.raises(ToolArgumentsError, match="not valid JSON"):
        tool(forecast).validate("{place: Rome")


def test_foreign_definition_normalized_and_reported() -> None:
    made = Tool.from_definition(
        {
            "name": "spotify.play",
            "description": "Play songs.",
            "parameters": {
                "type": "dict",
                "properties": {
                    "artist": {"type": "string", "description": "Artist."},
                    "duration": {"type": "float", "description": "Minutes.", "default": "3"},
                    "tags": {"type": "tuple", "items": {"type": "string"}, "description": "T."},
                    "extra": {"type": "any", "description": "Anything."},
                },
                "required": ["artist", "missing"],
            },
        }
    )
    assert (made.name, made.original_name) == ("spotify_play", "spotify.play")
    assert made.normalization_report == snapshot(
        [
            "$.name: 'spotify.play' is not a valid function name (letters, digits, _ and -, at most 64); renamed to 'spotify_play'",
            "$.parameters.type: 'dict' is not a JSON type; 'object'",
            "$.parameters.properties.duration.type: 'float' is not a JSON type; 'number'",
            "$.parameters.properties.duration.default: \"3\" does not match type 'number'; removed",
            "$.parameters.properties.tags.type: 'tuple' is not a JSON type; 'array'",
            "$.parameters.properties.extra.type: 'any' is not a JSON type; removed",
            "$.parameters.required: names no such property: ['missing']; dropped",
        ]
    )
    props = made.parameters_schema()["properties"]
    assert props["duration"] == {"type": "number", "description": "Minutes."}
    assert (
        made.validate({"artist": "Queen", "duration": 3, "extra": [1]}).values["artist"] == "Queen"
    )
    with pytest.raises(ToolArgumentsError) as info:
        made.validate({"duration": "long", "tags": [1]})
    assert [e.path for e in info.value.errors] == ["", "duration", "tags[0]"]


def test_validate_tool_definitions_reports_every_problem_with_a_path() -> None:
    problems = validate_tool_definitions(
        [
            {
                "type": "function",
                "function": {
                    "name": "ok",
                    "description": "Fine.",
                    "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}},
                },
            },
            {
                "name": "bad name",
                "parameters": {
                    "type": "object",
                    "properties": {"n": {"type": "int", "description": "N", "default": "one"}},
                },
            },
            {"name": "ok", "description": "Dup.", "parameters": {"type": "object"}},
        ]
    )
    assert [str(p) for p in problems] == snapshot(
        [
            "$[0].function.parameters.properties.x.description: missing (Workers AI requires a description on every property)",
            "$[1].name: 'bad name' is not a valid function name (letters, digits, _ and -, at most 64); renamed to 'bad_name'",
            "$[1].description: no description",
            "$[1].parameters.properties.n.type: 'int' is not a JSON type; 'integer'",
            "$[1].parameters.properties.n.default: \"one\" does not match type 'integer'; removed",
            "$[2].name: 'ok' duplicates $[0]",
        ]
    )


def test_toolset_refuses_duplicates_and_caches_definitions() -> None:
    def a() -> None:
        """A."""

    toolset = Toolset([a])
    with pytest.raises(ToolDefinitionError, match="another tool already has this name"):
        toolset.add(tool(a))
    assert "a" in toolset and len(toolset) == 1 and toolset.names == ["a"]
    assert toolset.definitions("inline") is toolset.definitions("inline")


def test_schema_meta_check_fails_a_broken_tool_at_build() -> None:
    with pytest.raises(ToolDefinitionError, match="parameters"):
        Tool.from_definition(
            {"name": "x", "parameters": {"type": "object", "properties": {"a": {"minimum": "1"}}}}
        )


HOTEL = {
    "name": "book_hotel",
    "description": "Book a hotel.",
    "parameters": {
        "type": "object",
        "properties": {
            "number_of_adults": {
                "type": "integer",
                "enum": ["1", "2", "3", "dontcare"],
                "default": "dontcare",
            },
            "rooms": {"type": "integer", "enum": ["1", "2"], "default": "1"},
            "city": {"type": "string"},
        },
        "required": ["city"],
    },
}


def test_an_enum_contradicting_its_type_is_repaired_and_reported() -> None:
    made = Tool.from_definition(HOTEL)
    assert made.normalization_report == snapshot(
        [
            '$.parameters.properties.number_of_adults.enum: ["1", "2", "3", "dontcare"] do not all have type \'integer\'; type set to \'string\'',
            '$.parameters.properties.rooms.enum: ["1", "2"] do not all have type \'integer\'; converted',
        ]
    )
    props = made.parameters_schema()["properties"]
    assert props["number_of_adults"] == {
        "type": "string",
        "enum": ["1", "2", "3", "dontcare"],
        "default": "dontcare",
    }
    assert props["rooms"] == {"type": "integer", "enum": [1, 2], "default": 1}
    assert made.validate({"city": "Oslo", "number_of_adults": "dontcare", "rooms": 2}).values
    with pytest.raises(ToolArgumentsError):
        made.validate({"city": "Oslo", "number_of_adults": 2})
    check_tool_schemas([made.definition("inline")])  # the local call grammar holds it


@pytest.mark.parametrize(
    ("schema", "fixed"),
    [
        ({"type": "boolean", "const": "true"}, {"type": "boolean", "const": True}),
        ({"type": "string", "enum": [1, 2.5]}, {"type": "string", "enum": ["1", "2.5"]}),
        (
            {"type": ["integer", "null"], "enum": [1, None, "many"]},
            {"type": ["integer", "null", "string"], "enum": [1, None, "many"]},
        ),
    ],
)
def test_values_contradicting_their_type_are_converted_or_the_type_widened(
    schema: dict[str, Any], fixed: dict[str, Any]
) -> None:
    made = Tool.from_definition(
        {"name": "t", "parameters": {"type": "object", "properties": {"x": schema}}}
    )
    assert made.parameters_schema()["properties"]["x"] == fixed
    assert any(line.startswith("$.parameters.properties.x.") for line in made.normalization_report)


@pytest.mark.model
async def test_the_repaired_tool_works_among_others_on_the_local_runtime(model_path: Path) -> None:
    from agentkit.runtimes.llama_cpp import LlamaCpp

    hotel = Tool.from_definition(HOTEL)
    local = LlamaCpp(model_path)
    try:
        request = GenerationRequest.build(
            messages=[{"role": "user", "content": "Book a hotel in Oslo for two adults."}],
            tools=[hotel.definition("inline"), tool(forecast).definition("inline")],
            tool_choice="book_hotel",
            temperature=0,
            max_tokens=80,
        )
        generation = await local.generate(request)
    finally:
        await local.aclose()
    (call,) = generation.tool_calls
    hotel.validate(call.arguments)


def test_a_schema_nested_too_deep_is_refused_when_ingested() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(400):
        schema = {"type": "object", "properties": {"a": schema}}
    with pytest.raises(ToolDefinitionError) as caught:
        Tool.from_definition({"name": "deep", "parameters": schema})
    assert str(caught.value) == (
        "tool 'deep': $.parameters: nests deeper than 200 levels of objects and arrays"
    )


@pytest.mark.model
def test_a_grammar_runtime_refuses_an_unholdable_schema_when_the_agent_is_built() -> None:
    empty_range = {"type": "integer", "minimum": 5, "maximum": 1}
    parameters = {"type": "object", "properties": {"n": empty_range}, "required": ["n"]}
    count = Tool.from_definition({"name": "count", "parameters": parameters})
    with pytest.raises(SchemaGrammarError) as caught:
        Agent("local", tools=[tool(forecast), count])
    assert str(caught.value).startswith("count.parameters: ")
    assert "required property 'n' is unsatisfiable" in str(caught.value)
    # A runtime without a grammar sends the schema as it is: its model may cope.
    Agent(FunctionRuntime(lambda request: Generation(response="ok")), tools=[count])
    Agent("local", tools=[tool(forecast), Tool.from_definition(HOTEL)])


def _cross_check(made: Tool) -> None:
    for dialect in ("full", "inline"):
        check_schema(made.parameters_schema(dialect))


class Order(BaseModel):
    sku: str
    quantity: int = Field(ge=1)
    unit: Unit = Unit.CELSIUS


def order(items: list[Order], rush: bool = False, note: str | None = None) -> None:
    """Order.

    Args:
        items: Lines.
        rush: Fast.
        note: Note.
    """


@settings(max_examples=60, deadline=None)
@given(
    st.builds(
        dict,
        items=st.lists(st.builds(Order)),
        rush=st.booleans(),
        note=st.none() | st.text(max_size=20),
    )
)
def test_values_pydantic_accepts_pass_the_generated_schema(payload: dict[str, Any]) -> None:
    made = tool(order)
    _cross_check(made)
    validated = made.validate(
        {**payload, "items": [i.model_dump(mode="json") for i in payload["items"]]}
    )
    dumped = TypeAdapter(dict[str, Any]).dump_python(validated.values, mode="json")
    jsonschema.validate(dumped, made.parameters_schema("full"))
    jsonschema.validate(dumped, made.parameters_schema("inline"))
