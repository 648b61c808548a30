"""An OpenAPI 3.0 or 3.1 document read into `Operation`s: what a tool shows and how it calls.

Each operation becomes one tool whose parameters are a single JSON Schema object: the path,
query, header and cookie parameters, and the request body. An object body's properties sit
beside the parameters; any other body (an array, a string, a union) is one property, `body`.

Names are kept as the document gives them. Where two of them clash (a path parameter `id` and
a body property `id`, a query and a header parameter of one name), every one of that name
is renamed after where it goes: `path_id`, `body_id`, `query_user`, `header_user`. The
schema's `description` of such a property says which it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agentkit.errors import ConfigurationError
from agentkit.openapi._schemas import RefError, SpecSchemas

__all__ = [
    "METHODS",
    "Body",
    "Operation",
    "Parameter",
    "SpecError",
    "parse_document",
    "read_operations",
]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_DESCRIPTION = 1024
"""Characters of a tool's description (the summary first); longer ones are cut."""

Location = Literal["path", "query", "header", "cookie", "body"]
_NAME = re.compile(r"[^a-zA-Z0-9_-]+")
_FORM = "application/x-www-form-urlencoded"


class SpecError(ValueError):
    """The document is not an OpenAPI 3 document this package can read; says where."""


@dataclass(frozen=True)
class Parameter:
    """One argument of a tool and where its value goes in the request."""

    name: str
    """The property's name in the tool's schema."""
    wire_name: str
    """The name in the request (the parameter's, or the body property's)."""
    location: Location
    style: str = "simple"
    explode: bool = False
    json_encoded: bool = False
    """The parameter is described by `content` (a JSON value sent as text)."""


@dataclass(frozen=True)
class Body:
    """How the request body is made from the arguments."""

    content_type: str
    """`application/json` (or another JSON type) or `application/x-www-form-urlencoded`."""
    whole: str | None
    """The property holding the whole body; None when the body's properties are the tool's."""
    required: bool


@dataclass(frozen=True)
class Operation:
    """One operation of the document, ready to be a tool."""

    name: str
    """The tool's name: the `operationId` made a valid name, or one made of method and path."""
    method: str
    """Lower case: `get`, `post`, ..."""
    path: str
    """The path template, e.g. `/pets/{petId}`."""
    description: str
    schema: dict[str, Any]
    """The tool's parameters: one JSON Schema object."""
    parameters: tuple[Parameter, ...]
    body: Body | None
    operation_id: str | None = None
    tags: tuple[str, ...] = ()
    security: tuple[dict[str, Any], ...] | None = None
    """The operation's `security` (else the document's); None: the document says nothing."""
    notes: tuple[str, ...] = field(default=())
    """What was left out of the tool (an unsupported body type, a cookie, ...)."""


def parse_document(text: str | bytes, where: str) -> dict[str, Any]:
    """A document from JSON or YAML text (YAML needs `pyyaml`: the `openapi` extra).

    Raises:
        SpecError: not JSON or YAML, not an object, not OpenAPI 3.
        ConfigurationError: the text is YAML and pyyaml is not installed.
    """
    try:
        document = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError:
            raise ConfigurationError(
                f"{where}: reading YAML needs pyyaml: pip install 'agentkit[openapi]'"
            ) from None
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise SpecError(f"{where}: neither JSON nor YAML{at}") from None
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise SpecError(f"{where}: an OpenAPI document is an object (got {kind})")
    check_version(document, where)
    return document


def check_version(document: Mapping[str, Any], where: str) -> str:
    """The `openapi` version, once found to be 3.0 or 3.1.

    Raises:
        SpecError: Swagger 2.0, or another version.
    """
    version = document.get("openapi")
    if "swagger" in document:
        raise SpecError(
            f"{where}: Swagger {document['swagger']} is not supported; convert it to OpenAPI 3"
        )
    if not isinstance(version, str) or not re.match(r"3\.[01](\.|$)", version):
        raise SpecError(f"{where}: openapi must be 3.0.x or 3.1.x (got {version!r})")
    if not isinstance(document.get("paths", {}), Mapping):
        raise SpecError(f"{where}: paths must be an object")
    return version


def read_operations(document: Mapping[str, Any], where: str) -> tuple[list[Operation], list[str]]:
    """Every operation of the document, and why any was left out."""
    version = check_version(document, where)
    schemas = SpecSchemas(document, version)
    operations: list[Operation] = []
    problems: list[str] = []
    taken: set[str] = set()
    default_security = document.get("security")
    for path, raw_item in (document.get("paths") or {}).items():
        try:
            item = schemas.deref(raw_item)
        except RefError as exc:
            problems.append(f"path {path}: {exc}")
            continue
        if not isinstance(item, Mapping):
            continue
        for method in METHODS:
            raw = item.get(method)
            if not isinstance(raw, Mapping):
                continue
            label = f"{method.upper()} {path}"
            try:
                made = _operation(schemas, path, method, item, raw, default_security, taken)
            except (RefError, SpecError) as exc:
                problems.append(f"{label}: {exc}")
                continue
            taken.add(made.name)
            operations.append(made)
    return operations, problems


def tool_name(operation_id: Any, method: str, path: str, taken: set[str]) -> str:
    """A valid, unused tool name: the operationId's characters outside `[a-zA-Z0-9_-]` made
    `_`, or `<method>_<path words>` when there is none; `_2`, `_3`... if taken."""
    if isinstance(operation_id, str) and operation_id.strip():
        base = _NAME.sub("_", operation_id.strip()).strip("_")
    else:
        base = "_".join([method, *re.findall(r"[a-zA-Z0-9]+", path)])
    base = base[:64] or method
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base[: 63 - len(str(n))]}_{n}"
    return name


def _describe(raw: Mapping[str, Any], method: str, path: str) -> str:
    summary = str(raw.get("summary") or "").strip()
    details = str(raw.get("description") or "").strip()
    text = "\n\n".join(p for p in (summary, details) if p) or f"{method.upper()} {path}"
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 1].rstrip() + "…"
    return text


def _operation(
    schemas: SpecSchemas,
    path: str,
    method: str,
    item: Mapping[str, Any],
    raw: Mapping[str, Any],
    default_security: Any,
    taken: set[str],
) -> Operation:
    # (argument name, where it goes, its wire name, schema, required, Parameter extras)
    found: list[tuple[str, Location, dict[str, Any], bool, dict[str, Any]]] = []
    notes: list[str] = []
    merged: dict[tuple[str, str], Any] = {}
    for raw_param in [*(item.get("parameters") or []), *(raw.get("parameters") or [])]:
        param = schemas.deref(raw_param)
        if isinstance(param, Mapping) and isinstance(param.get("name"), str):
            merged[(param["name"], str(param.get("in")))] = param  # the operation's win
    for (name, where), param in merged.items():
        if where not in ("path", "query", "header", "cookie"):
            raise SpecError(f"parameter {name!r}: 'in' must be path, query, header or cookie")
        if where == "header" and name.lower() in ("accept", "content-type", "authorization"):
            continue  # OpenAPI says these are ignored: the body and the security set them
        style = param.get("style") or ("form" if where in ("query", "cookie") else "simple")
        explode = param.get("explode", style == "form")
        encoded = "schema" not in param and isinstance(param.get("content"), Mapping)
        source = param.get("schema")
        if encoded:
            media: Any = next(iter(param["content"].values()), None)
            source = media.get("schema") if isinstance(media, Mapping) else None
        schema = schemas.schema(source)
        if param.get("description") and "description" not in schema:
            schema["description"] = str(param["description"])
        required = where == "path" or param.get("required") is True
        extras = {"style": style, "explode": bool(explode), "json_encoded": encoded}
        found.append((name, where, schema, required, extras))  # type: ignore[arg-type]
    body = _body(schemas, raw.get("requestBody"), found, notes)
    unknown = set(re.findall(r"{([^}]+)}", path)) - {n for n, w, *_ in found if w == "path"}
    if unknown:
        raise SpecError(f"path parameters {sorted(unknown)} are not described")
    properties: dict[str, Any] = {}
    required_names: list[str] = []
    parameters: list[Parameter] = []
    counts: dict[str, int] = {}
    for name, *_ in found:
        counts[name] = counts.get(name, 0) + 1
    for name, where, schema, required, extras in found:
        shown = name if counts[name] == 1 else f"{where}_{name}"
        while shown in properties:
            shown = f"{shown}_"
        if shown != name:
            note = f"({where} {'parameter' if where != 'body' else 'property'} {name!r})"
            schema = {**schema, "description": f"{schema.get('description', '')} {note}".strip()}
        properties[shown] = schema
        if required:
            required_names.append(shown)
        parameters.append(Parameter(shown, name, where, **extras))
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required_names:
        out["required"] = required_names
    if body is not None and body.whole is not None:
        whole = next(p.name for p in parameters if p.location == "body")
        body = Body(body.content_type, whole, body.required)
    security = raw.get("security", default_security)
    return Operation(
        name=tool_name(raw.get("operationId"), method, path, taken),
        method=method,
        path=path,
        description=_describe(raw, method, path),
        schema=out,
        parameters=tuple(parameters),
        body=body,
        operation_id=raw.get("operationId") if isinstance(raw.get("operationId"), str) else None,
        tags=tuple(str(t) for t in raw.get("tags") or ()),
        security=tuple(security) if isinstance(security, list) else None,
        notes=tuple(notes),
    )


def _body(
    schemas: SpecSchemas,
    raw: Any,
    found: list[tuple[str, Location, dict[str, Any], bool, dict[str, Any]]],
    notes: list[str],
) -> Body | None:
    """The body's plan; its properties (or the one `body` property) are added to `found`."""
    if raw is None:
        return None
    body = schemas.deref(raw)
    content = body.get("content") if isinstance(body, Mapping) else None
    if not isinstance(content, Mapping) or not content:
        return None
    required = body.get("required") is True
    types = list(content)
    chosen = next((t for t in types if _is_json(t)), None)
    if chosen is None and _FORM in types:
        chosen = _FORM
    if chosen is None:
        if required:
            raise SpecError(f"request bodies of type {', '.join(types)} are not supported")
        notes.append(f"its optional body ({', '.join(types)}) is never sent")
        return None
    media = content[chosen] if isinstance(content[chosen], Mapping) else {}
    schema = _merge_all_of(schemas.schema(media.get("schema")))
    props = schema.get("properties")
    flat = (
        isinstance(props, dict)
        and schema.get("type", "object") == "object"
        and not any(k in schema for k in ("anyOf", "oneOf", "allOf", "not"))
        and not schema.get("additionalProperties")
    )
    if flat:
        assert isinstance(props, dict)
        needed = set(schema.get("required") or ()) if required else set()
        for key, sub in props.items():
            found.append((key, "body", sub, key in needed, {}))
        return Body(chosen, None, required)
    if chosen == _FORM:
        raise SpecError("a form body must be an object with properties")
    if body.get("description") and "description" not in schema:
        schema["description"] = str(body["description"])
    found.append(("body", "body", schema, required, {}))
    return Body(chosen, "body", required)


def _is_json(media_type: str) -> bool:
    kind = media_type.split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json") or kind == "*/*"


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    """`allOf` of object schemas (a model extending another) as one object schema."""
    parts = schema.get("allOf")
    if not isinstance(parts, list) or not all(
        isinstance(p, dict) and set(p) <= {"type", "properties", "required", "description"}
        for p in parts
    ):
        return schema
    if any(p.get("type", "object") != "object" for p in parts):
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    merged["type"] = "object"
    merged["properties"] = {k: v for p in parts for k, v in (p.get("properties") or {}).items()}
    required = [r for p in parts for r in (p.get("required") or [])]
    if required:
        merged["required"] = list(dict.fromkeys(required))
    return merged
