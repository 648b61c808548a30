"""Reading a JSON Schema for a grammar: which keywords it holds, `allOf` merged, counts.

Nothing here writes GBNF; `GrammarBuilder` (`agentkit.chat_formats.grammar`) asks these
questions of each schema it walks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentkit.errors import SchemaGrammarError

__all__ = ["ANNOTATIONS", "NUMERIC", "TYPE_HINTS", "UNHELD", "count", "fits_type", "merge_all_of"]

ANNOTATIONS = set(
    "title description default examples $comment deprecated readOnly writeOnly $schema $id "
    "$anchor $defs definitions format contentEncoding contentMediaType discriminator".split()
)
"""Keywords that describe a value without constraining it (`format` is held where known)."""
UNHELD = set(
    "pattern multipleOf uniqueItems not if then else contains minContains maxContains "
    "patternProperties propertyNames minProperties maxProperties dependentRequired "
    "dependentSchemas dependencies unevaluatedProperties unevaluatedItems $dynamicRef".split()
)
"""Keywords a grammar cannot hold (`minProperties`, `maxProperties`: except for a dictionary)."""
NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
TYPE_HINTS = (
    ("object", ("properties", "required", "additionalProperties")),
    ("array", ("items", "prefixItems", "minItems", "maxItems")),
    ("string", ("minLength", "maxLength")),
    ("number", NUMERIC),
)
"""The type a schema without `type` has, from the keywords it uses (the first that matches)."""


def merge_all_of(schema: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """`schema` with its `allOf` parts merged into it (`schema` itself when it has none).

    Parts merge when they do not overlap: their `properties` (distinct names) and `required`
    lists join, and the same `type` in two parts is one type.

    Raises:
        SchemaGrammarError: a part is not an object, a keyword other than an annotation
            appears in two parts, or `additionalProperties` would apply to the properties of
            another part.
    """
    parts = schema.get("allOf")
    if parts is None:
        return schema
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    # additionalProperties is read against the properties of its own part only.
    extras_from: Any = "self" if "additionalProperties" in schema else None
    props_from: set[Any] = {"self"} if "properties" in schema else set()
    for i, part in enumerate(parts):
        if not isinstance(part, Mapping):
            raise SchemaGrammarError(f"{path}.allOf[{i}]", "allOf", "parts must be objects")
        if "properties" in part:
            props_from.add(i)
        if "additionalProperties" in part:
            extras_from = i
        part = dict(part)
        # Objects described in parts: their properties (distinct names) and required lists
        # join; the same type in both parts is one type.
        props, more = merged.get("properties"), part.get("properties")
        if (
            isinstance(props, Mapping)
            and isinstance(more, Mapping)
            and not props.keys() & more.keys()
        ):
            part["properties"] = {**props, **more}
            del merged["properties"]
        if isinstance(merged.get("required"), list) and isinstance(part.get("required"), list):
            part["required"] = list(dict.fromkeys(merged.pop("required") + part["required"]))
        if "type" in part and part["type"] == merged.get("type"):
            del merged["type"]
        clash = (part.keys() & merged.keys()) - ANNOTATIONS
        if clash:
            raise SchemaGrammarError(
                f"{path}.allOf[{i}]",
                "allOf",
                f"cannot be merged: {sorted(clash)} appear in more than one part",
            )
        merged.update(part)
    closed = extras_from is not None and merged["additionalProperties"] is not True
    if closed and props_from - {extras_from}:
        raise SchemaGrammarError(
            path,
            "allOf",
            "cannot be merged: additionalProperties applies to the properties of its "
            "own part only, and other parts declare properties",
        )
    return merged


def count(schema: Mapping[str, Any], key: str, path: str) -> int | None:
    """The count `schema[key]` (`minItems`, `maxLength`, ...), None when it is not given.

    Raises:
        SchemaGrammarError: the value is not an integer >= 0.
    """
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaGrammarError(f"{path}.{key}", key, f"must be a count >= 0 (got {value!r})")
    return value


def fits_type(value: Any, kind: Any) -> bool:
    """Whether the JSON value `value` has the schema type `kind` (a name, a list, or None)."""
    if kind is None:
        return True
    kinds = [kind] if isinstance(kind, str) else list(kind)
    python = {"string": str, "boolean": bool, "null": type(None), "object": dict, "array": list}
    for name in kinds:
        if name in ("integer", "number") and type(value) in (int, float):
            if name == "number" or float(value).is_integer():
                return True
        elif name in python and type(value) is python[name]:
            return True
    return False
