"""Which local `$ref`s of a schema refer back to themselves, and through which others."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["ref_cycles", "ref_target"]


def ref_target(root: Mapping[str, Any], ref: str) -> Any:
    """The schema a local `$ref` points to (`#`, `#/$defs/x`, `#/definitions/x`), or None."""
    if ref == "#":
        return root
    match = re.fullmatch(r"#/(\$defs|definitions)/([^/]+)", ref)
    defs = root.get(match.group(1)) if match else None
    return defs.get(match.group(2)) if isinstance(defs, Mapping) and match else None


def ref_cycles(root: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """For each reference on a cycle: (the cycle's number, how many references it holds).

    A cycle here is a strongly connected set of references: each one can reach every other
    through the schemas they point to. A reference on no cycle is not in the result.
    """
    edges: dict[str, list[str]] = {}
    pending = _refs_in(root)
    while pending:
        ref = pending.pop()
        if ref in edges:
            continue
        target = ref_target(root, ref)
        edges[ref] = _refs_in(target) if target is not None else []
        pending += edges[ref]
    # Kosaraju: finishing order on the graph, then components on the reversed graph.
    order: list[str] = []
    seen: set[str] = set()
    for start in edges:
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(edges[start]))]
        while stack:
            node, nexts = stack[-1]
            step = next((n for n in nexts if n not in seen), None)
            if step is None:
                order.append(node)
                stack.pop()
            else:
                seen.add(step)
                stack.append((step, iter(edges.get(step, []))))
    back: dict[str, list[str]] = {ref: [] for ref in edges}
    for ref, targets in edges.items():
        for n in targets:
            back.setdefault(n, []).append(ref)
    out: dict[str, tuple[int, int]] = {}
    placed: set[str] = set()
    for number, start in enumerate(reversed(order)):
        if start in placed:
            continue
        members, todo = [], [start]
        placed.add(start)
        while todo:
            node = todo.pop()
            members.append(node)
            for n in back.get(node, []):
                if n not in placed:
                    placed.add(n)
                    todo.append(n)
        if len(members) > 1 or start in edges.get(start, []):
            out.update((m, (number, len(members))) for m in members)
    return out


def _refs_in(schema: Any) -> list[str]:
    """Every `$ref` string written anywhere inside `schema`, in order, without repeats."""
    found: dict[str, None] = {}
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if isinstance(ref, str):
                found[ref] = None
            todo += node.values()
        elif isinstance(node, list):
            todo += node
    return list(found)
