"""A function's signature and docstring -> a validator of its arguments and a JSON Schema.

Only pydantic's public API is used: the parameters become a `TypedDict`, and one `TypeAdapter`
of it gives both the schema and the core schema the validator is made from. A `TypedDict`
rather than a model: validating into a dict is what a call needs (the keyword arguments), it
costs half of building a model instance, and any parameter name is a valid key.

The validator differs from the adapter's own at the top level only: unknown keys are dropped
rather than refused, and omitted parameters are left out rather than given their defaults.
`Tool.validate` refuses unknown keys and fills in defaults itself, which is cheaper: refusing
unknown keys costs pydantic-core about 40% of validating a small dict, while once only known
keys are kept, comparing two lengths tells whether there were others. Nested types keep their
own rules (unknown keys refused, defaults filled)."""

from __future__ import annotations

import contextlib
import enum
import inspect
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

import docstring_parser
from pydantic import (
    ConfigDict,
    PydanticSchemaGenerationError,
    PydanticUserError,
    TypeAdapter,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import (
    CoreSchema,
    PydanticSerializationError,
    SchemaValidator,
    to_jsonable_python,
)
from typing_extensions import NotRequired, Required, TypedDict

from agentkit.errors import ToolDefinitionError
from agentkit.tools.context import is_context_annotation

__all__ = ["Signature", "ToolDefinitionWarning", "read_signature"]


class ToolDefinitionWarning(UserWarning):
    """A tool was built, but something in its definition deserves a look."""


@dataclass(frozen=True)
class Signature:
    """What a function says about itself."""

    description: str
    validator: SchemaValidator
    """Validates the arguments into keyword arguments, coerced to the Python values the
    function takes; it keeps known keys only, and leaves omitted parameters out."""
    schema: dict[str, Any]
    """The JSON Schema of the parameters, `$defs` kept."""
    defaults: dict[str, Any]
    """Parameter name -> default value, for the parameters that have one."""
    context: str | None = None
    """The parameter that takes the run's `RunContext`, if one does (not an argument)."""


_CONFIG = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
# Called with a name and fields known only at run time, which type checkers cannot follow.
_make_typed_dict: Any = TypedDict


def _encode_default(value: Any) -> Any:
    """A default as JSON, as pydantic's schema generator writes it, without building a
    `TypeAdapter` for the common kinds.

    Raises:
        PydanticSerializationError: the value has no JSON form.
    """
    kind = type(value)
    if value is None or kind in (bool, int, str) or (kind is float and math.isfinite(value)):
        return value
    if isinstance(value, enum.Enum) and type(value.value) in (str, int):
        return value.value
    return to_jsonable_python(value, by_alias=True)


class _SchemaGenerator(GenerateJsonSchema):
    """pydantic's generator, minus two costs that dominate building a tool: a `TypeAdapter`
    made per default value just to encode it, and field titles that are stripped anyway."""

    def encode_default(self, dft: Any) -> Any:
        return _encode_default(dft)

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


# A Google section header: parsing as Google alone costs a third of trying every style.
_GOOGLE = re.compile(r"^\s*(Args|Arguments|Keyword Args|Returns|Raises|Yields):\s*$", re.M)


def _describe(doc: str | None) -> tuple[str, dict[str, str]]:
    if not doc:
        return "", {}
    text = inspect.cleandoc(doc)
    google = _GOOGLE.search(text) is not None and ":param" not in text
    styles = docstring_parser.DocstringStyle
    style = styles.GOOGLE if google else styles.AUTO
    parsed = docstring_parser.parse(text, style=style)
    parts = [p for p in (parsed.short_description, parsed.long_description) if p]
    return "\n\n".join(parts).strip(), {
        p.arg_name.lstrip("*"): (p.description or "").strip() for p in parsed.params
    }


def _strip_titles(node: Any, in_properties: bool = False) -> Any:
    """Drop the `title` keys pydantic adds: noise for a model, tokens for every call."""
    if isinstance(node, dict):
        return {
            k: _strip_titles(v, k == "properties")
            for k, v in node.items()
            if not (k == "title" and not in_properties and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _lenient(schema: CoreSchema) -> CoreSchema:
    """The arguments' core schema with unknown keys dropped and no default filled in, at the
    top level only (see the module docstring)."""
    if schema["type"] == "definitions":
        return {**schema, "schema": _lenient(schema["schema"])}
    if schema["type"] != "typed-dict":
        raise TypeError(f"unexpected core schema for the arguments: {schema['type']}")
    fields = {}
    for key, field in schema["fields"].items():
        inner = field["schema"]
        fields[key] = {**field, "schema": inner["schema"]} if inner["type"] == "default" else field
    return {**schema, "fields": fields, "extra_behavior": "ignore"}


def read_signature(function: Callable[..., Any], name: str) -> Signature:
    """Build the argument validator and schema of `function`.

    Raises:
        ToolDefinitionError: a parameter cannot be a tool argument (`*args`, `**kwargs`, a
            positional-only parameter, or a type pydantic cannot validate).
    """
    description, documented = _describe(inspect.getdoc(function))
    try:
        hints = get_type_hints(function, include_extras=True)
    except Exception as exc:
        raise ToolDefinitionError(name, [f"type hints cannot be resolved: {exc}"]) from None
    fields: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    problems: list[str] = []
    context: str | None = None
    parameters = inspect.signature(function).parameters
    for param in parameters.values():
        if is_context_annotation(hints.get(param.name)):
            if context is not None:
                problems.append(f"{param.name}: only one parameter may take the RunContext")
            elif param.kind is param.POSITIONAL_ONLY:
                problems.append(f"{param.name}: the RunContext is passed by keyword")
            context = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            problems.append(f"{param.name}: *args and **kwargs cannot be tool arguments")
            continue
        if param.kind is param.POSITIONAL_ONLY:
            problems.append(f"{param.name}: positional-only parameters cannot be tool arguments")
            continue
        annotation = hints.get(param.name, Any)
        if param.default is param.empty:
            fields[param.name] = Required[annotation]
        else:
            fields[param.name] = NotRequired[annotation]
            defaults[param.name] = param.default
    if problems:
        raise ToolDefinitionError(name, problems)
    try:
        arguments = _make_typed_dict(f"{name}_arguments", fields)
        arguments.__pydantic_config__ = _CONFIG
        adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(arguments)
        schema = _strip_titles(
            adapter.json_schema(by_alias=True, schema_generator=_SchemaGenerator)
        )
        validator = SchemaValidator(_lenient(adapter.core_schema))
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError, NameError) as exc:
        first = str(exc).splitlines()[0]
        raise ToolDefinitionError(
            name, [f"a parameter's type cannot be validated: {first}"]
        ) from None
    # Descriptions and defaults are written into the schema here rather than given to pydantic
    # as a `Field` each: a `FieldInfo` costs more to make than the rest of the parameter.
    properties = schema.setdefault("properties", {})
    for key, default in defaults.items():
        # As pydantic does, a default with no JSON form stays out of the schema.
        with contextlib.suppress(PydanticSerializationError):
            properties[key]["default"] = _encode_default(default)
    for key, text in documented.items():
        if text and key in properties:
            properties[key]["description"] = text  # the docstring wins over an Annotated Field
    undocumented = [key for key, prop in properties.items() if not prop.get("description")]
    unknown = sorted(set(documented) - set(parameters))
    if unknown:
        warnings.warn(
            f"tool {name!r}: the docstring documents parameters that do not exist: "
            + ", ".join(unknown),
            ToolDefinitionWarning,
            stacklevel=4,
        )
    if undocumented:
        warnings.warn(
            f"tool {name!r}: no description for parameter(s) {', '.join(undocumented)}; "
            "Workers AI requires a description on every property",
            ToolDefinitionWarning,
            stacklevel=4,
        )
    return Signature(description, validator, schema, defaults, context)
