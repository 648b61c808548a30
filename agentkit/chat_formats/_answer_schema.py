"""What an answer in `response_format` must be, and what the prompt tells the model about it.

Shared by the answer grammars (`agentkit.chat_formats.answer`, which re-exports every name
here) and the grammar engine (`agentkit.chat_formats.engine`), which sits below them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from agentkit.chat_formats._schema_text import renderings
from agentkit.errors import FieldError, RequestValidationError
from agentkit.model_api import MAX_TEXT

__all__ = [
    "MAX_REF_DEPTH",
    "answer_schema",
    "bad_format",
    "check_size",
    "fits",
    "instructions",
    "json_key",
]

MAX_REF_DEPTH = 3
"""How many levels deep a recursive `$ref` unfolds in an answer grammar."""
_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


def answer_schema(response_format: Mapping[str, Any]) -> Mapping[str, Any]:
    """The JSON Schema an answer in `response_format` must fit (`json_object`: any object).

    Raises:
        RequestValidationError: `response_format` is not one of the two shapes; the error names
            the field (`response_format.type`, `response_format.json_schema`) and the value.
    """
    if not isinstance(response_format, Mapping):
        raise bad_format("response_format", "must be an object", response_format)
    kind = response_format.get("type")
    if kind == "json_object":
        return _ANY_OBJECT
    if kind != "json_schema":
        raise bad_format("response_format.type", 'must be "json_object" or "json_schema"', kind)
    schema = response_format.get("json_schema")
    if isinstance(schema, Mapping) and isinstance(schema.get("schema"), Mapping):
        schema = schema["schema"]  # the OpenAI shape {name, schema, strict}
    if not isinstance(schema, Mapping) or isinstance(schema, bool):
        raise bad_format("response_format.json_schema", "must be a JSON Schema object", schema)
    return schema


def bad_format(path: str, why: str, value: Any) -> RequestValidationError:
    """The error for a `response_format` field `path` holding `value`, shortened."""
    shown = json.dumps(value, ensure_ascii=False, default=repr)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return RequestValidationError([FieldError(path, f"{why} (got {shown})")])


def json_key(value: Any) -> str:
    """`value` as compact JSON, key order kept (grammar caches key on it).

    Raises:
        RequestValidationError: `value` is not plain JSON.
    """
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise bad_format("response_format", "must be plain JSON", repr(exc)) from None


def instructions(
    response_format: Mapping[str, Any], fits_in: Callable[[str], bool] | None = None
) -> str:
    """What the prompt tells the model about the answer's form: the schema itself, or, where
    it does not fit (`fits_in`; by default a message's length), a shorter account of it
    (`agentkit.chat_formats._schema_text`)."""
    schema = answer_schema(response_format)
    if schema is _ANY_OBJECT:
        return "Your final answer to the user is a JSON object."
    fitting = fits_in or (lambda text: len(text) <= MAX_TEXT)
    text = ""
    for text in renderings(schema):
        if fitting(text):
            break
    return text


def fits(system: str) -> None:
    """Refuse a schema whose text makes the system message longer than a message may be."""
    if len(system) <= MAX_TEXT:
        return
    raise RequestValidationError(
        [
            FieldError(
                "response_format.json_schema",
                f"is too large for the model's context: the system message that shows it to "
                f"the model would take {len(system):,} characters, more than the "
                f"{MAX_TEXT:,} a message holds",
            )
        ]
    )


def check_size(response_format: Mapping[str, Any]) -> None:
    """Refuse a `response_format` whose schema, shown to the model, is longer than a message.

    Raises:
        RequestValidationError: it has neither shape, or it is too large (the sizes named).
    """
    fits(instructions(response_format))
