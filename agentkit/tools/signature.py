"""A function's signature and docstring -> a pydantic model of its arguments and a JSON Schema.

Only pydantic's public API is used: `create_model`, `Field`, `model_json_schema`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, PydanticSchemaGenerationError, create_model
from pydantic.fields import FieldInfo

from agentkit.errors import ToolDefinitionError

__all__ = ["Signature", "ToolDefinitionWarning", "read_signature"]


class ToolDefinitionWarning(UserWarning):
    """A tool was built, but something in its definition deserves a look."""


@dataclass(frozen=True)
class Signature:
    """What a function says about itself."""

    description: str
    model: type[BaseModel]
    """Validates the arguments and coerces them to the Python values the function takes."""
    schema: dict[str, Any]
    """The JSON Schema of the parameters, `$defs` kept."""
    renamed: dict[str, str]
    """Model field name -> parameter name, for parameters named like a BaseModel attribute."""


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)


def _describe(doc: str | None) -> tuple[str, dict[str, str]]:
    if not doc:
        return "", {}
    parsed = docstring_parser.parse(inspect.cleandoc(doc))
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


def read_signature(function: Callable[..., Any], name: str) -> Signature:
    """Build the argument model and schema of `function`.

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
    renamed: dict[str, str] = {}
    problems: list[str] = []
    undocumented: list[str] = []
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            problems.append(f"{param.name}: *args and **kwargs cannot be tool arguments")
            continue
        if param.kind is param.POSITIONAL_ONLY:
            problems.append(f"{param.name}: positional-only parameters cannot be tool arguments")
            continue
        annotation = hints.get(param.name, Any)
        text = documented.get(param.name, "")
        if not text:
            undocumented.append(param.name)
        info: FieldInfo = Field(
            default=... if param.default is param.empty else param.default,
            description=text or None,
        )
        field_name = param.name
        if hasattr(BaseModel, field_name) or field_name.startswith("_"):
            field_name = f"arg_{param.name.lstrip('_')}"
            info.alias = param.name
            renamed[field_name] = param.name
        fields[field_name] = (annotation, info)
    if problems:
        raise ToolDefinitionError(name, problems)
    try:
        model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{name}_arguments", __base__=_Arguments, **fields
        )
        schema = _strip_titles(model.model_json_schema(by_alias=True))
    except (PydanticSchemaGenerationError, TypeError, NameError) as exc:
        first = str(exc).splitlines()[0]
        raise ToolDefinitionError(name, [f"a parameter's type cannot be validated: {first}"]) from None
    unknown = sorted(set(documented) - {p for p in inspect.signature(function).parameters})
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
    schema.setdefault("properties", {})
    return Signature(description, model, schema, renamed)
