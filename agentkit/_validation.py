"""Turn validator errors into `FieldError`s that name the field, the bound and the value."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from agentkit.errors import FieldError

_SHORT = 80


def show(value: Any) -> str:
    """A value as the caller wrote it, cut to a readable length."""
    if isinstance(value, int) and value.bit_length() > 256:
        # Python refuses to print integers past a few thousand digits; nobody wants them.
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def path_of(loc: Iterable[str | int]) -> str:
    """`("messages", 0, "content")` -> `messages[0].content`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _size(value: Any) -> str:
    try:
        return str(len(value))
    except TypeError:
        return "?"


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input")
    got = f" (got {show(value)})"
    bounds = {
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {show(_number(ctx[key]))}{got}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"is not a known field{got}"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters (got {_size(value)})"
    if kind == "string_too_short" and ctx["min_length"] == 1:
        return "must not be empty"
    if kind == "string_too_short":
        return f"must be at least {ctx['min_length']} characters (got {_size(value)})"
    if kind == "too_long":
        return f"must have at most {ctx['max_length']} items (got {_size(value)})"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} items (got {_size(value)})"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}{got}"
    if kind == "enum":
        return f"must be one of {ctx['expected']}{got}"
    if kind == "value_error":
        # Our own validators raise ValueError with a finished sentence.
        text = err["msg"].removeprefix("Value error, ")
        return text if "(got" in text else text + got
    if kind == "assertion_error":
        return err["msg"].removeprefix("Assertion failed, ")
    msg = err["msg"]
    return (msg[0].lower() + msg[1:]) + got


def field_errors(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[FieldError]:
    """Every error of a pydantic `ValidationError`, most specific path kept."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        # Union and tagged-union steps add type names to the path; keep field names only.
        loc = [p for p in err["loc"] if not (isinstance(p, str) and _is_union_tag(p))]
        out.append(FieldError(path_of([*prefix, *loc]), _message(err)))
    return out


_TYPE_TAGS = frozenset(
    "str int float bool bytes list dict tuple set frozenset none any date datetime time uuid "
    "decimal enum literal model dataclass typed-dict nullable union".split()
)


def _is_union_tag(part: str) -> bool:
    """Pydantic puts a union's branch into `loc` (`str`, `list[int]`, `function-after[...]`)."""
    return "[" in part or part in _TYPE_TAGS or part.startswith(("json-or-python", "lax-or-"))
