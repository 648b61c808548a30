"""Short strings a schema's string values may take: what a grammar-held answer that must end
now writes inside a string that cannot simply close.

```
string_examples(schema) -> ("EUR", "0000-01-01", "a@a.aa", ...)   shortest first
shortest_match(r"^[A-Z]{3}-\\d+$") -> "AAA-0"
```

The strings come from the schema itself: `enum` and `const` values, `default`s and `examples`,
the shortest text each `pattern` matches, and one example per `format` the grammar engine
holds. Each is only a suggestion: whoever uses one checks it against the grammar first.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

# Python's own reading of a regular expression (the module moved in 3.11).
_sre: Any = importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")

__all__ = ["shortest_match", "string_examples"]

FORMAT_EXAMPLES: Mapping[str, str] = {
    "date-time": "2000-01-01T00:00:00Z",
    "date": "2000-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "a@a.aa",
    "hostname": "a",
    "ipv4": "0.0.0.0",
    "ipv6": "::",
    "uri": "a:",
    "uuid": "00000000-0000-0000-0000-000000000000",
}
"""The shortest-ish valid text of each `format` the engine holds."""

_MAX_EXAMPLES = 64
_CATEGORY_CHAR = {
    "CATEGORY_DIGIT": "0",
    "CATEGORY_NOT_DIGIT": "a",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "a",
    "CATEGORY_WORD": "a",
    "CATEGORY_NOT_WORD": "-",
}


def string_examples(schema: Any) -> tuple[str, ...]:
    """Strings the schema names or implies for its string values, shortest first (at most 64)."""
    found: dict[str, None] = {}
    for text in _strings(schema, 0):
        found.setdefault(text, None)
        if len(found) >= _MAX_EXAMPLES:
            break
    return tuple(sorted(found, key=len))


def _strings(schema: Any, depth: int) -> Iterator[str]:
    if depth > 64:
        return
    if isinstance(schema, list):
        for item in schema:
            yield from _strings(item, depth + 1)
        return
    if not isinstance(schema, Mapping):
        return
    for keyword in ("const", "default"):
        if isinstance(schema.get(keyword), str):
            yield schema[keyword]
    for keyword in ("enum", "examples"):
        values = schema.get(keyword)
        if isinstance(values, list):
            yield from (v for v in values if isinstance(v, str))
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        match = shortest_match(pattern)
        if match is not None:
            yield match
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in FORMAT_EXAMPLES:
        yield FORMAT_EXAMPLES[fmt]
    for keyword, value in schema.items():
        if keyword in ("const", "default", "enum", "examples"):
            continue
        if keyword in ("properties", "patternProperties", "$defs", "definitions"):
            if isinstance(value, Mapping):
                for sub in value.values():
                    yield from _strings(sub, depth + 1)
        elif isinstance(value, (Mapping, list)):
            yield from _strings(value, depth + 1)


def shortest_match(pattern: str) -> str | None:
    """A shortest text `pattern` matches (read as Python reads it), or None when this reading
    cannot tell (back-references, a pattern Python refuses)."""
    try:
        parsed = _sre.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    return _shortest(list(parsed), 0)


def _shortest(items: list[tuple[Any, Any]], depth: int) -> str | None:
    if depth > 50:
        return None
    out = []
    for op, av in items:
        part = _one(op, av, depth)
        if part is None:
            return None
        out.append(part)
    return "".join(out)


def _one(op: Any, av: Any, depth: int) -> str | None:
    name = str(op)
    if name == "LITERAL":
        return chr(av)
    if name == "NOT_LITERAL":
        return "a" if chr(av) != "a" else "b"
    if name == "ANY":
        return "a"
    if name == "IN":
        return _in_set(av)
    if name == "CATEGORY":
        return _CATEGORY_CHAR.get(str(av), "a")
    if name == "BRANCH":
        options = [_shortest(list(branch), depth + 1) for branch in av[1]]
        found = [o for o in options if o is not None]
        return min(found, key=len) if found else None
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, _high, sub = av
        part = _shortest(list(sub), depth + 1)
        return None if part is None else part * low
    if name == "SUBPATTERN":
        return _shortest(list(av[-1]), depth + 1)
    if name == "ATOMIC_GROUP":
        return _shortest(list(av), depth + 1)
    if name in ("AT", "ASSERT", "ASSERT_NOT"):
        return ""  # anchors and look-arounds: the grammar checks what is written
    return None  # GROUPREF and the like


def _in_set(items: list[tuple[Any, Any]]) -> str | None:
    negated = any(op is _sre.NEGATE for op, _ in items)
    if negated:
        refused = set()
        for op, av in items:
            if op is _sre.LITERAL:
                refused.add(chr(av))
            elif op is _sre.RANGE:
                refused.update(chr(c) for c in range(av[0], min(av[1], 0x2FF) + 1))
        return next((c for c in "a0A-_ ." if c not in refused), None)
    for op, av in items:
        if op is _sre.LITERAL:
            return chr(av)
        if op is _sre.RANGE:
            return chr(av[0])
        if op is _sre.CATEGORY:
            return _CATEGORY_CHAR.get(str(av), "a")
    return None
