"""An OpenAPI document's `$ref`s resolved, and its schemas made plain JSON Schema.

Lookups go through `referencing` (the library `jsonschema` resolves with): the whole document
is one resource, so `#/components/...` pointers, and in 3.1 a schema's own `$id`, resolve as
JSON Schema says. References to other files or URLs are not fetched: an operation that needs one
is left out, with the reference named.

Tool schemas are sent inline (several model APIs and most small models handle `$ref` poorly),
so each reference is replaced by its target. A schema that contains itself (a tree, a linked
list) is expanded once; where it would recur, it becomes an object of any shape, described as
such. A size budget stops documents whose references multiply (each level naming the next
twice) from growing without bound.

OpenAPI 3.0 schemas are converted to the JSON Schema 2020-12 the tools use: `nullable: true`
becomes a `null` type, boolean `exclusiveMinimum`/`exclusiveMaximum` become numbers, `example`
becomes `examples`. Keywords only OpenAPI knows (`discriminator`, `xml`, `externalDocs`, `x-*`)
are dropped, and so are `readOnly` properties (a service's answer holds them; a request does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    from referencing._core import Resolver  # the type `Registry.resolver()` returns

__all__ = ["MAX_DEPTH", "MAX_NODES", "RefError", "SpecSchemas"]

MAX_DEPTH = 32
"""Levels of nested schemas a tool's parameters may have; deeper ones become any object."""
MAX_NODES = 20_000
"""Schema objects one operation's parameters may expand to (the budget for references)."""

_BASE = "urn:agentkit:openapi-document"
_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_ONE = (
    "items",
    "additionalProperties",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
)
_DROPPED = frozenset({"discriminator", "xml", "externalDocs", "nullable", "$schema", "$id"})


class RefError(ValueError):
    """A reference that cannot be followed, or a schema too large to expand."""


class SpecSchemas:
    """Resolves references in one document and converts its schemas.

    Args:
        document: the OpenAPI document (a dict parsed from JSON or YAML).
        version: its `openapi` field, e.g. `"3.0.3"` or `"3.1.0"`.
    """

    def __init__(self, document: Mapping[str, Any], version: str) -> None:
        self.legacy = version.startswith("3.0")
        resource: Resource[Any] = DRAFT202012.create_resource(document)
        self._root: Resolver[Any] = Registry().with_resource(_BASE, resource).resolver(_BASE)

    def deref(self, node: Any) -> Any:
        """An object that may be a `{"$ref": ...}` (a parameter, a request body, a path item),
        followed to what it names.

        Raises:
            RefError: the reference points nowhere, outside the document, or in a circle.
        """
        seen: list[str] = []
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen or len(seen) > 16:
                raise RefError(f"$ref {ref!r} refers to itself")
            seen.append(ref)
            node = self._lookup(self._root, ref)[0]
        return node

    def _lookup(self, resolver: Resolver[Any], ref: str) -> tuple[Any, Resolver[Any]]:
        try:
            found = resolver.lookup(ref)
        except Unresolvable:
            if not ref.startswith("#"):
                raise RefError(
                    f"$ref {ref!r} is not in this document (only local '#/...' references "
                    "are followed)"
                ) from None
            raise RefError(f"$ref {ref!r} points to nothing in the document") from None
        return found.contents, found.resolver

    def schema(self, node: Any) -> dict[str, Any]:
        """A schema from the document, inline and in JSON Schema 2020-12.

        Raises:
            RefError: a reference cannot be followed, or the expansion is over `MAX_NODES`.
        """
        budget = [MAX_NODES]
        out = self._walk(node, self._root, (), 0, budget)
        return out if isinstance(out, dict) else {}

    def _walk(
        self,
        node: Any,
        resolver: Resolver[Any],
        chain: tuple[int, ...],
        depth: int,
        budget: list[int],
    ) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, Mapping):
            return {}
        budget[0] -= 1
        if budget[0] < 0:
            raise RefError(f"its schemas expand to more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            return {"type": "object", "description": "(nested too deep to describe)"}
        ref = node.get("$ref")
        if isinstance(ref, str):
            target, inner = self._lookup(resolver, ref)
            name = ref.rsplit("/", 1)[-1]
            if id(target) in chain:
                # Expanded once already on this branch: a recursive schema stops here.
                return {"type": "object", "description": f"a {name} (the same shape as above)"}
            expanded = self._walk(target, inner, (*chain, id(target)), depth, budget)
            # 3.0 ignores the siblings of a `$ref`; 3.1 applies them (a description, mostly).
            if self.legacy or not isinstance(expanded, dict):
                return expanded
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            siblings = self._walk(siblings, resolver, chain, depth, budget) if siblings else {}
            return {**expanded, **siblings}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED or key.startswith("x-"):
                continue
            if key in _MAPS and isinstance(value, Mapping):
                walked = {
                    name: self._walk(sub, resolver, chain, depth + 1, budget)
                    for name, sub in value.items()
                    if not (isinstance(sub, Mapping) and sub.get("readOnly") is True)
                }
                out[key] = walked
            elif key in (*_LISTS, *_ONE) and isinstance(value, list):  # tuple `items` too
                out[key] = [self._walk(s, resolver, chain, depth + 1, budget) for s in value]
            elif key in _ONE:
                out[key] = self._walk(value, resolver, chain, depth + 1, budget)
            elif key in ("readOnly", "writeOnly", "deprecated"):
                continue
            elif key == "example":
                out.setdefault("examples", [value])
            else:
                out[key] = value
        if isinstance(out.get("properties"), dict) and isinstance(out.get("required"), list):
            # Read-only properties were dropped: they cannot be required of a request.
            out["required"] = [r for r in out["required"] if r in out["properties"]]
            if not out["required"]:
                del out["required"]
        if self.legacy:
            _from_openapi_30(node, out)
        return out


def _from_openapi_30(node: Mapping[str, Any], out: dict[str, Any]) -> None:
    """3.0 keywords whose meaning 2020-12 spells differently."""
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(node.get(flag), bool):
            if node[flag] and bound in out:
                out[flag] = out.pop(bound)
            else:
                out.pop(flag, None)
    if node.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
            if isinstance(out.get("enum"), list) and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        elif kind is None and out:
            inner = dict(out)
            out.clear()
            out["anyOf"] = [inner, {"type": "null"}]
