"""What the prompt shows the model of an answer's schema, as much as the context allows.

Under a grammar the model cannot write an answer the schema refuses, so the prompt needs to say
what to write, not to hold the whole schema: a schema of 20,000 characters (common in
JSONSchemaBench) would take the embedded model's whole context. `renderings(schema)` gives the
texts richest first; the caller takes the first that fits:

1. the schema as it is (compact JSON);
2. the schema without its annotations (`description`, `title`, `examples`, `$comment`, ...);
3. an outline: `{"name": string, "age"?: integer, "tags": [string], ...}`, three levels deep;
4. the outline one level deep;
5. the top-level keys alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from agentkit.chat_formats._cycles import ref_target

__all__ = ["renderings"]

ANNOTATIONS = frozenset(
    (
        "description",
        "title",
        "examples",
        "$comment",
        "default",
        "$schema",
        "$id",
        "id",
        "deprecated",
        "readOnly",
        "writeOnly",
    )
)
"""Keywords that say nothing the grammar does not hold: left out when room is short."""
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_MAX_KEYS = 40
_MAX_CHOICES = 6

_SCHEMA = "Your final answer to the user is a JSON object that fits this JSON Schema:\n"
_SHAPE = (
    "Your final answer to the user is a JSON {} of this shape (`?` marks an optional key; "
    "the full schema holds as you write):\n"
)


def renderings(schema: Mapping[str, Any]) -> Iterator[str]:
    """The texts that tell the model the answer's form, each shorter than the one before."""
    yield _SCHEMA + _compact(schema)
    yield _SCHEMA + _compact(_stripped(schema))
    for depth in (3, 1):
        outline = _outline(schema, schema, depth, frozenset())
        yield _SHAPE.format("object" if outline.startswith("{") else "value") + outline
    keys = list(_properties(schema, schema))
    shown = ", ".join(json.dumps(k, ensure_ascii=False) for k in keys[:_MAX_KEYS])
    more = ", ..." if len(keys) > _MAX_KEYS else ""
    yield f"Your final answer to the user is a JSON object with the keys {shown}{more}."


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _stripped(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_stripped(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS:
            continue
        if keyword in _NAMED and isinstance(value, Mapping):
            out[keyword] = {name: _stripped(sub) for name, sub in value.items()}
        elif keyword in ("enum", "const", "required"):
            out[keyword] = value
        else:
            out[keyword] = _stripped(value)
    return out


def _properties(schema: Any, root: Mapping[str, Any]) -> dict[str, Any]:
    """The properties an object schema names, through `$ref` and `allOf`."""
    if not isinstance(schema, Mapping):
        return {}
    found: dict[str, Any] = {}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = ref_target(root, ref)
        if target is not None and target is not schema:
            found.update(_properties(target, root))
    for part in schema.get("allOf", []) if isinstance(schema.get("allOf"), list) else []:
        found.update(_properties(part, root))
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        found.update(properties)
    return found


def _outline(schema: Any, root: Mapping[str, Any], depth: int, seen: frozenset[str]) -> str:
    if not isinstance(schema, Mapping):
        return "any" if schema is not False else "nothing"
    if "const" in schema:
        return _compact(schema["const"])
    if isinstance(schema.get("enum"), list):
        values = [_compact(v) for v in schema["enum"][:_MAX_CHOICES]]
        return " | ".join(values + (["..."] if len(schema["enum"]) > _MAX_CHOICES else []))
    ref = schema.get("$ref")
    if isinstance(ref, str) and "properties" not in schema and "allOf" not in schema:
        target = ref_target(root, ref)
        if target is None or ref in seen or depth <= 0:
            return ref.rsplit("/", 1)[-1] or "object"
        return _outline(target, root, depth, seen | {ref})
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        if isinstance(branches, list) and branches:
            parts = [_outline(b, root, depth, seen) for b in branches[:_MAX_CHOICES]]
            return " | ".join(dict.fromkeys(parts)) + (" | ..." if len(branches) > 6 else "")
    kinds = schema.get("type")
    names = kinds if isinstance(kinds, list) else [kinds] if isinstance(kinds, str) else []
    properties = _properties(schema, root)
    if properties or "object" in names:
        text = _object(schema, properties, root, depth, seen)
        return " | ".join([text, *(n for n in names if n != "object")])
    if "array" in names:
        items = schema.get("items")
        inner = _outline(items, root, depth - 1, seen) if depth > 0 and items else "any"
        return " | ".join([f"[{inner}]", *(n for n in names if n != "array")])
    shown = [n for n in names if isinstance(n, str)]
    if schema.get("format") and "string" in shown:
        shown[shown.index("string")] = f"string ({schema['format']})"
    return " | ".join(shown) or "any"


def _object(
    schema: Mapping[str, Any],
    properties: Mapping[str, Any],
    root: Mapping[str, Any],
    depth: int,
    seen: frozenset[str],
) -> str:
    if depth <= 0 or not properties:
        return "{...}" if properties else "object"
    required = schema.get("required")
    needed = set(required) if isinstance(required, list) else set()
    parts = []
    for name, sub in list(properties.items())[:_MAX_KEYS]:
        mark = "" if name in needed else "?"
        parts.append(f"{_compact(name)}{mark}: {_outline(sub, root, depth - 1, seen)}")
    if len(properties) > _MAX_KEYS:
        parts.append("...")
    return "{" + ", ".join(parts) + "}"
