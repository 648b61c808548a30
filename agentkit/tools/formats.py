"""Schema dialects, and foreign tool definitions brought to standard JSON Schema.

Dialects of one parameters schema:

- `full`: as built, with `$defs` and `$ref`;
- `inline`: references inlined, `$defs` gone, every property with a `type` and a
  `description` (what Llama chat templates and the Workers AI schema need);
- `strict`: OpenAI strict mode; refused, with the reasons, when it would change the meaning.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

__all__ = [
    "MAX_NESTING",
    "DefinitionProblem",
    "inline_refs",
    "meta_problems",
    "normalize_definition",
    "strict_problems",
    "to_strict",
]

_JSON_TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}
_SLOPPY_TYPES = {
    "dict": "object",
    "float": "number",
    "double": "number",
    "int": "integer",
    "long": "integer",
    "str": "string",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
    "set": "array",
    "none": "null",
}
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}
_STRICT_UNSUPPORTED = {
    "patternProperties",
    "unevaluatedProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "if",
    "then",
    "else",
    "not",
    "dependentRequired",
    "dependentSchemas",
    "contains",
    "allOf",
}
_STRICT_FORMATS = {
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
}
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_NESTING = 200
"""Levels of objects and arrays a foreign parameters schema may nest (a schema level is about
two: the schema, its `properties`)."""


@dataclass(frozen=True)
class DefinitionProblem:
    """Something wrong (or changed) in a tool definition, at a JSON path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# -- inline ---------------------------------------------------------------------------------


def inline_refs(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with every local `$ref` replaced by its target and `$defs` removed.

    Raises:
        ValueError: a reference is recursive (it cannot be inlined) or points nowhere.
    """
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(v, seen) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            key = ref.rsplit("/", 1)[-1]
            if key not in defs:
                raise ValueError(f"$ref {ref!r} points to no definition")
            if key in seen:
                raise ValueError(f"$ref {ref!r} is recursive and cannot be inlined")
            target = walk(defs[key], (*seen, key))
            siblings = {k: walk(v, seen) for k, v in node.items() if k != "$ref"}
            return {**target, **siblings}
        return {k: walk(v, seen) for k, v in node.items() if k not in ("$defs", "definitions")}

    out: dict[str, Any] = walk(dict(schema), ())
    return out


def _types_of(node: Mapping[str, Any]) -> list[str] | None:
    """The JSON types a schema allows, when it is a plain union of typed branches."""
    if "type" in node:
        t = node["type"]
        return [t] if isinstance(t, str) else list(t)
    if "enum" in node:
        found = {_kind(v) for v in node["enum"]}
        named = {k for k in found if k is not None}
        return sorted(named) if len(named) == len(found) else None
    if "const" in node:
        kind = _kind(node["const"])
        return [kind] if kind else None
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        out: list[str] = []
        for b in branches:
            branch = _types_of(b)
            if branch is None:
                return None
            out.extend(k for k in branch if k not in out)
        return out
    return None


def _kind(value: Any) -> str | None:
    for name, types in _PY_TYPES.items():
        if type(value) in types and not (name == "number" and type(value) is int):
            return name
    return None


def workers_ai_ready(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Inline references; give every property a `type` and a `description`."""
    out = inline_refs(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for v in node:
                walk(v)
            return
        if not isinstance(node, dict):
            return
        for key, prop in (node.get("properties") or {}).items():
            if isinstance(prop, dict):
                if "type" not in prop:
                    kinds = _types_of(prop)
                    if kinds:
                        prop["type"] = kinds[0] if len(kinds) == 1 else kinds
                if not prop.get("description"):
                    prop["description"] = str(prop.get("title") or key.replace("_", " "))
        for value in node.values():
            walk(value)

    walk(out)
    return out


# -- strict ---------------------------------------------------------------------------------


def strict_problems(schema: Mapping[str, Any]) -> list[str]:
    """Why the schema cannot be sent in OpenAI strict mode without changing its meaning."""
    problems: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
            return
        if not isinstance(node, dict):
            return
        for key in sorted(_STRICT_UNSUPPORTED & node.keys()):
            problems.append(f"{path or '$'}: keyword {key!r} is not supported in strict mode")
        if "format" in node and node["format"] not in _STRICT_FORMATS:
            problems.append(f"{path or '$'}: format {node['format']!r} is not supported")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) or (node.get("type") == "object" and "properties" not in node):
            problems.append(
                f"{path or '$'}: a free-form object (any keys) cannot be strict; "
                "strict objects list every key"
            )
        props = node.get("properties") or {}
        required = set(node.get("required") or [])
        for key in props:
            if key not in required:
                problems.append(
                    f"{path}.{key}".lstrip(".")
                    + ": may be omitted (it has a default); strict mode requires every "
                    "property, so it would have to be sent"
                )
        for key, value in node.items():
            if key == "properties":
                for name, sub in value.items():
                    walk(sub, f"{path}.{name}".lstrip("."))
            elif key in ("$defs", "definitions"):
                for name, sub in value.items():
                    walk(sub, f"$defs.{name}")
            elif key in ("items", "anyOf", "oneOf", "prefixItems"):
                walk(value, f"{path}.{key}".lstrip("."))

    walk(schema, "")
    return problems


def to_strict(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The strict form: closed objects, every property required, no defaults."""
    out = copy.deepcopy(dict(schema))

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for v in node:
                walk(v)
            return
        if not isinstance(node, dict):
            return
        node.pop("default", None)
        if node.get("type") == "object" or "properties" in node:
            node["additionalProperties"] = False
            node["required"] = list(node.get("properties") or {})
        for value in node.values():
            walk(value)

    walk(out)
    return out


# -- meta-schema ----------------------------------------------------------------------------


def meta_problems(schema: dict[str, Any]) -> list[str]:
    """Errors of the schema against the JSON Schema 2020-12 meta-schema (fast, in Rust)."""
    if jsonschema_rs.meta.is_valid(schema):
        return []
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.instance_path)
        return [f"${where}: {exc.message.splitlines()[0]}"]
    return ["not a valid JSON Schema"]


# -- foreign definitions --------------------------------------------------------------------


def normalize_definition(
    definition: Mapping[str, Any], path: str = "$"
) -> tuple[dict[str, Any], str, list[DefinitionProblem]]:
    """A foreign definition in either shape -> (`{name, description, parameters}` in standard
    JSON Schema, the original name, every change made or problem found)."""
    notes: list[DefinitionProblem] = []
    body: Any = definition
    if isinstance(definition.get("function"), Mapping):
        body = definition["function"]
        path = f"{path}.function"
    original = body.get("name")
    if not isinstance(original, str) or not original:
        notes.append(DefinitionProblem(f"{path}.name", "a tool needs a name (a string)"))
        original = "unnamed_tool"
    name = original
    if not _NAME.match(name):
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "tool"
        notes.append(
            DefinitionProblem(
                f"{path}.name",
                f"{original!r} is not a valid function name (letters, digits, _ and -, at most "
                f"64); renamed to {name!r}",
            )
        )
    description = body.get("description")
    if not isinstance(description, str):
        notes.append(DefinitionProblem(f"{path}.description", "no description"))
        description = ""
    raw = body.get("parameters", body.get("input_schema"))
    if raw is None:
        raw = {"type": "object", "properties": {}}
    if not isinstance(raw, Mapping):
        notes.append(DefinitionProblem(f"{path}.parameters", "must be an object schema"))
        raw = {"type": "object", "properties": {}}
    if _nests_deeper(raw, MAX_NESTING):
        # Copying or walking it would run into Python's recursion limit: left as it is.
        reason = f"nests deeper than {MAX_NESTING} levels of objects and arrays"
        notes.append(DefinitionProblem(f"{path}.parameters", reason))
        return {"name": name, "description": description, "parameters": dict(raw)}, original, notes
    parameters = _normalize_schema(copy.deepcopy(dict(raw)), f"{path}.parameters", notes)
    if parameters.get("type") != "object":
        notes.append(
            DefinitionProblem(f"{path}.parameters.type", "parameters must be an object schema")
        )
        parameters["type"] = "object"
    parameters.setdefault("properties", {})
    for problem in meta_problems(parameters):
        notes.append(DefinitionProblem(f"{path}.parameters", problem))
    return {"name": name, "description": description, "parameters": parameters}, original, notes


def _type_list(kind: Any) -> list[Any]:
    return [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, list) else []


def _fits(value: Any, kinds: list[Any]) -> bool:
    """Whether `value` has one of the JSON types `kinds` (unknown ones fit nothing)."""
    return any(
        isinstance(t, str)
        and type(value) in _PY_TYPES.get(t, ())
        and not (t != "boolean" and type(value) is bool)
        for t in kinds
    )


def _converted(value: Any, kind: str) -> tuple[bool, Any]:
    """`value` as a value of JSON type `kind`, when it says the same: `"2"` -> 2, 2 -> `"2"`."""
    if kind in ("integer", "number") and isinstance(value, str):
        try:
            number = json.loads(value.strip())
        except ValueError:
            return False, None
        ok = type(number) is int or (kind == "number" and type(number) is float)
        return ok and not isinstance(number, bool) and math.isfinite(number), number
    if kind == "string" and type(value) in (int, float):
        return True, json.dumps(value)
    if kind == "boolean" and value in ("true", "false"):
        return True, value == "true"
    return False, None


def _match_values_to_type(
    node: dict[str, Any], key: str, path: str, notes: list[DefinitionProblem]
) -> None:
    """An `enum` (or `const`) whose values do not all have the declared type allows nothing.

    The values are converted when every one converts to one declared type; otherwise the
    values stand and the type becomes theirs. A default among the values follows them.
    """
    kinds = _type_list(node["type"])
    single = key == "const"
    values = [node[key]] if single else node[key]
    if not isinstance(values, list) or not values or all(_fits(v, kinds) for v in values):
        return
    if not kinds or not all(isinstance(k, str) and k in _JSON_TYPES for k in kinds):
        return  # a type that is not one is reported by the meta-schema check
    shown = json.dumps(node[key], ensure_ascii=False)
    verb = "does not have" if single else "do not all have"
    for kind in kinds:
        results = [_converted(v, kind) if not _fits(v, [kind]) else (True, v) for v in values]
        if all(ok for ok, _ in results):
            new = [v for _, v in results]
            if "default" in node and node["default"] in values:
                node["default"] = new[values.index(node["default"])]
            node[key] = new[0] if single else new
            message = f"{shown} {verb} type {kind!r}; converted"
            notes.append(DefinitionProblem(path, message))
            return
    declared = node["type"]
    found = list(dict.fromkeys(k for k in map(_kind, values) if k is not None))
    node["type"] = found[0] if len(found) == 1 else found
    message = f"{shown} {verb} type {declared!r}; type set to {node['type']!r}"
    notes.append(DefinitionProblem(path, message))


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether a JSON value holds objects or arrays more than `limit` levels down."""
    pending = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= limit:
            return True
        pending += [(child, depth + 1) for child in children]
    return False


def _normalize_schema(node: Any, path: str, notes: list[DefinitionProblem]) -> Any:
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if isinstance(kind, str) and kind not in _JSON_TYPES:
        fixed = _SLOPPY_TYPES.get(kind.lower())
        if kind.lower() == "any":
            del node["type"]
            notes.append(DefinitionProblem(f"{path}.type", "'any' is not a JSON type; removed"))
        elif fixed:
            node["type"] = fixed
            notes.append(
                DefinitionProblem(f"{path}.type", f"{kind!r} is not a JSON type; {fixed!r}")
            )
        else:
            del node["type"]
            notes.append(DefinitionProblem(f"{path}.type", f"unknown type {kind!r}; removed"))
    elif isinstance(kind, list):
        node["type"] = [_SLOPPY_TYPES.get(t.lower(), t) if isinstance(t, str) else t for t in kind]
    kind = node.get("type")
    if kind == "array" and isinstance(node.get("items"), list):
        # Draft-4 tuple form: positional schemas.
        node["prefixItems"] = node.pop("items")
        notes.append(DefinitionProblem(f"{path}.items", "a list of item schemas; prefixItems"))
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                node[key][name] = _normalize_schema(sub, f"{path}.{key}.{name}", notes)
    for key in ("items", "additionalProperties", "not", "contains"):
        if isinstance(node.get(key), dict):
            node[key] = _normalize_schema(node[key], f"{path}.{key}", notes)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(node.get(key), list):
            node[key] = [
                _normalize_schema(s, f"{path}.{key}[{i}]", notes) for i, s in enumerate(node[key])
            ]
    if "required" in node:
        required = node["required"]
        props = node.get("properties") or {}
        if not isinstance(required, list):
            notes.append(DefinitionProblem(f"{path}.required", "must be a list; removed"))
            del node["required"]
        else:
            kept = [r for r in required if r in props]
            if len(kept) != len(required):
                gone = [r for r in required if r not in props]
                notes.append(
                    DefinitionProblem(
                        f"{path}.required", f"names no such property: {gone}; dropped"
                    )
                )
                node["required"] = kept
    for key in ("enum", "const"):
        if key in node and "type" in node:
            _match_values_to_type(node, key, f"{path}.{key}", notes)
    if "default" in node and "type" in node:
        value = node["default"]
        if not _fits(value, _type_list(node["type"])):
            notes.append(
                DefinitionProblem(
                    f"{path}.default",
                    f"{json.dumps(value)} does not match type {node['type']!r}; removed",
                )
            )
            del node["default"]
    if kind == "object" and "properties" in node and not isinstance(node["properties"], dict):
        notes.append(DefinitionProblem(f"{path}.properties", "must be an object; removed"))
        del node["properties"]
    return node
