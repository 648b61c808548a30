"""The model's arguments: near-JSON repaired, then validated once by the tool's one validator."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from agentkit._validation import path_of
from agentkit.errors import FieldError

__all__ = ["ValidatedArguments", "parse_near_json", "schema_errors"]

_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_JSON_WORDS = re.compile(r"\b(true|false|null)\b")


# Not frozen: a frozen dataclass costs a third of a validation just to be built.
@dataclass(slots=True)
class ValidatedArguments:
    """Arguments ready for the call."""

    values: dict[str, Any]
    """Keyword arguments, coerced to the types the function takes."""
    repairs: tuple[str, ...] = ()
    """What was repaired before the arguments parsed, in order."""


def parse_near_json(text: str) -> tuple[Any, tuple[str, ...]]:
    """Parse arguments text, repairing what models commonly get wrong.

    Returns:
        The parsed value and the repairs made (empty when it was plain JSON).

    Raises:
        ValueError: nothing could make it parse.
    """
    repairs: list[str] = []
    candidate = text.strip()
    if not candidate:
        return {}, ()
    fenced = _FENCE.match(candidate)
    if fenced:
        candidate = fenced.group(1).strip()
        repairs.append("removed a code fence")
    for attempt in range(3):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            value = _repair(candidate, repairs)
        if isinstance(value, str) and attempt < 2:
            candidate = value.strip()
            repairs.append("decoded a JSON object given as a string")
            continue
        return value, tuple(repairs)
    raise ValueError("arguments are nested strings too deep")


def _repair(text: str, repairs: list[str]) -> Any:
    start, end = text.find("{"), text.rfind("}")
    if start > 0 or (end != -1 and end < len(text) - 1):
        if start == -1 or end < start:
            raise ValueError(f"arguments are not a JSON object: {text[:80]!r}")
        text = text[start : end + 1]
        repairs.append("cut text around the JSON object")
    no_commas = _TRAILING_COMMA.sub(r"\1", text)
    try:
        value = json.loads(no_commas)
    except json.JSONDecodeError:
        pass
    else:
        repairs.append("removed trailing commas")
        return value
    # Python literal syntax: single quotes, True/False/None, trailing commas.
    pythonic = _JSON_WORDS.sub(lambda m: {"true": "True", "false": "False"}.get(m[1], "None"), text)
    try:
        value = ast.literal_eval(pythonic)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"arguments are not valid JSON: {text[:80]!r}") from None
    repairs.append("read Python literal syntax (quotes, True/False/None)")
    return value


def schema_errors(validator: jsonschema_rs.Validator, value: Any) -> list[FieldError]:
    """Every error of a compiled JSON Schema validator, with the failing field's path."""
    errors = []
    for error in validator.iter_errors(value):
        errors.append(FieldError(path_of(error.instance_path), error.message))
    return errors
