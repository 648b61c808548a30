"""Recursive `$ref`s unfolded a bounded number of levels, in JSON Schema itself.

A small model under a recursive grammar nests as long as it may (a list whose every `next` is
another link, a tree whose every child has children) until `max_tokens` cuts the answer. The
GBNF builder unfolds recursion `MAX_REF_DEPTH` levels deep in its rules; for the grammar engine
the schema is rewritten the same way before it is compiled: level k of a recursive definition
becomes a definition of its own (`$defs["agentkit-node-k"]`) whose recursive references point
to level k + 1, and the references of the last level become `false` (an optional property or an
array's items end there; a required one leaves its branch without a value). One definition per
level and definition: definitions that refer to each other do not multiply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agentkit.chat_formats._cycles import ref_cycles, ref_target

__all__ = ["MAX_NESTING", "unfolded"]

MAX_NESTING = 12
"""The most levels references that refer to each other unfold to in all."""

_VALUES = ("const", "enum", "default", "examples")
_DEFS = ("$defs", "definitions")


def unfolded(schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
    """`schema` with each recursive `$ref` open at most `depth` times inside itself (a cycle of
    n definitions: `depth` * n levels in all, at most `MAX_NESTING`); the same schema when
    nothing in it is recursive."""
    cycles = ref_cycles(schema)
    if not cycles:
        return schema
    levels = min(depth * max(size for _, size in cycles.values()), MAX_NESTING)
    made: dict[str, Any] = {}

    def name(ref: str, level: int) -> str:
        return f"agentkit-{re.sub(r'[^A-Za-z0-9_]+', '-', ref).strip('-') or 'root'}-{level}"

    def rewrite(node: Any, level: int) -> Any:
        if isinstance(node, list):
            return [rewrite(item, level) for item in node]
        if not isinstance(node, Mapping):
            return node
        out = {k: v if k in _VALUES else rewrite(v, level) for k, v in node.items()}
        ref = node.get("$ref")
        if not (isinstance(ref, str) and ref in cycles):
            return out
        if level >= levels:
            return False
        key = name(ref, level + 1)
        if key not in made:
            made[key] = True  # taken before its body is written: the body may refer to it
            target = ref_target(schema, ref)
            if isinstance(target, Mapping):
                target = {k: v for k, v in target.items() if k not in _DEFS}
            made[key] = rewrite(target, level + 1)
        pointer = {"$ref": f"#/$defs/{key}"}
        del out["$ref"]
        if not out:
            return pointer
        parts = out.get("allOf")
        out["allOf"] = [*(parts if isinstance(parts, list) else []), pointer]
        return out

    top = rewrite({k: v for k, v in schema.items() if k not in _DEFS}, 0)
    if not isinstance(top, dict):
        return schema
    for keyword in _DEFS:
        defs = schema.get(keyword)
        if isinstance(defs, Mapping):
            top[keyword] = {k: rewrite(v, 0) for k, v in defs.items()}
    top["$defs"] = {**top.get("$defs", {}), **made}
    return top
