"""The checker: BFCL's AST rules for calls, trajectories for agent runs, and final answers.

One call against one expected call, in this order (the first failure is the verdict):

1. the name: the definition's (`spotify.play`), or as the tool was renamed to reach the
   model (`spotify_play`);
2. every argument the schema requires is given;
3. no argument beyond the schema's properties and the expected ones;
4. each value has its schema's type (an integer where a number is expected is fine), or the type
   of the expected values (the ground truth wins over the schema);
5. each value is one of the acceptable ones: strings compared after BFCL's normalisation
   (`standardize`), lists item by item, objects key by key (BFCL's nested form
   `{key: [acceptable...]}` or a plain value), numbers by equality;
6. an expected argument left out is allowed only when `""` is among its acceptable values.

Several calls are matched as a set (BFCL's parallel rule) or, for agent runs, as a trajectory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentkit.eval.dataset import Expected, ExpectedCall
from agentkit.tools import Tool
from agentkit.tools.formats import normalize_definition

__all__ = ["FailureKind", "MadeCall", "Verdict", "check_call", "check_calls", "standardize"]

FailureKind = Literal[
    "wrong_function",
    "missing_argument",
    "unknown_argument",
    "wrong_type",
    "wrong_value",
    "extra_call",
    "missing_call",
    "no_call",
    "unexpected_call",
    "wrong_answer",
    "error",
]
"""Why a case failed; reports group failures by it."""

_STRIPPED = re.compile(r"[ ,./\-_*^]")


def standardize(text: str) -> str:
    """BFCL's string normalisation: spaces and `,./-_*^` removed, lower case, single quotes made
    double (so `April 1, 2024` matches `april 1 2024`)."""
    return _STRIPPED.sub("", text).lower().replace("'", '"')


@dataclass(frozen=True)
class MadeCall:
    """A call the model made, as the checker sees it."""

    name: str
    """As the model emitted it."""
    arguments: Mapping[str, Any]
    """The decoded arguments."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": dict(self.arguments)}


@dataclass(frozen=True)
class Verdict:
    """Right or wrong, and why: the kind of failure and a reason naming the path."""

    passed: bool
    """The case (or call) is right."""
    kind: FailureKind | None = None
    """What went wrong; None when passed."""
    reason: str = ""
    """`arguments.city: "Paris" not in ["Paris, France"]`; empty when passed."""


PASS = Verdict(True)


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _renamed(name: str) -> str:
    """The name as a tool built from the definition carries it (dots made underscores)."""
    body, _, _ = normalize_definition({"name": name})
    return str(body["name"])


def _schema_for(expected: ExpectedCall, tools: Sequence[Tool]) -> dict[str, Any] | None:
    for tool in tools:
        if expected.name in (tool.original_name, tool.name):
            return tool.parameters_schema("full")
    return None


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


def _examples(acceptable: Sequence[Any]) -> list[Any]:
    return [a for a in acceptable if not (isinstance(a, str) and a == "")]


def _fits(value: Any, schema: Mapping[str, Any] | None, examples: Sequence[Any]) -> bool:
    """The value's type is the schema's, or that of an expected value."""
    # An integer stands for a float, as Python would convert it; not the other way round.
    if any(type(value) is type(e) or (type(value) is int and type(e) is float) for e in examples):
        if isinstance(value, list):
            inner = [x for e in examples if isinstance(e, list) for x in e]
            items = schema.get("items") if isinstance(schema, Mapping) else None
            return all(_fits(x, items, inner) for x in value)
        return True
    if not isinstance(schema, Mapping) or "type" not in schema:
        return True
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    for kind in kinds:
        allowed = _TYPES.get(kind)
        if allowed is None:
            return True
        if isinstance(value, bool) and kind != "boolean":
            continue
        if isinstance(value, allowed):
            if isinstance(value, (list, tuple)):
                return all(_fits(x, schema.get("items"), []) for x in value)
            return True
    return False


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(value: Any, wanted: Any) -> bool:
    """One value against one acceptable value, BFCL's way."""
    if isinstance(wanted, str):
        return isinstance(value, str) and standardize(value) == standardize(wanted)
    if isinstance(wanted, bool) or wanted is None:
        return value is wanted
    if _number(wanted):
        return _number(value) and value == wanted
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(wanted)
            and all(_same(v, w) for v, w in zip(value, wanted, strict=True))
        )
    if isinstance(wanted, Mapping):
        return isinstance(value, Mapping) and _object_problem(value, wanted, "") is None
    return bool(value == wanted)


def _object_problem(value: Mapping[str, Any], wanted: Mapping[str, Any], path: str) -> str | None:
    """An object against an acceptable object: in BFCL's nested form each key maps to a list
    of acceptable values (`""` among them: the key may be left out)."""
    for key, item in value.items():
        if key not in wanted:
            return f"{path}.{key}: not expected"
        options = wanted[key]
        if isinstance(options, list):
            if not any(_same(item, o) for o in _examples(options)):
                return f"{path}.{key}: {_show(item)} not in {_show(options)}"
        elif not _same(item, options):
            return f"{path}.{key}: {_show(item)} is not {_show(options)}"
    for key, options in wanted.items():
        if key not in value and not (isinstance(options, list) and "" in options):
            return f"{path}.{key}: missing"
    return None


def _value_problem(value: Any, acceptable: Sequence[Any], path: str) -> str | None:
    examples = _examples(acceptable)
    if any(_same(value, a) for a in examples):
        return None
    if len(examples) == 1 and isinstance(examples[0], Mapping) and isinstance(value, Mapping):
        found = _object_problem(value, examples[0], path)
        if found:
            return found
    return f"{path}: {_show(value)} not in {_show(list(acceptable))}"


def check_call(
    call: MadeCall, expected: ExpectedCall, tools: Sequence[Tool] = (), prefix: str = ""
) -> Verdict:
    """One call against one expected call, by BFCL's rules (see the module's docstring).

    Args:
        call: the call made.
        expected: what is acceptable.
        tools: the tools offered; the expected function's schema gives the required
            arguments, the known ones and their types (without it, only the values count).
        prefix: put before the paths in the reason (`calls[1].`).
    """
    if call.name != expected.name and call.name != _renamed(expected.name):
        originals = {t.name: t.original_name for t in tools}
        if originals.get(call.name) != expected.name:
            return Verdict(
                False,
                "wrong_function",
                f"{prefix}name: {_show(call.name)} is not {_show(expected.name)}",
            )
    schema = _schema_for(expected, tools)
    properties: Mapping[str, Any] = schema.get("properties", {}) if schema else {}
    given = call.arguments
    for name in schema.get("required", []) if schema else []:
        if name not in given:
            return Verdict(
                False, "missing_argument", f"{prefix}arguments.{name}: missing (required)"
            )
    for name in given:
        if name not in expected.arguments or (schema is not None and name not in properties):
            return Verdict(
                False,
                "unknown_argument",
                f"{prefix}arguments.{name}: not an expected argument (given {_show(given[name])})",
            )
    for name, value in given.items():
        acceptable = expected.arguments[name]
        declared = properties.get(name)
        if not _fits(value, declared, _examples(acceptable)):
            kind = declared.get("type") if isinstance(declared, Mapping) else None
            return Verdict(
                False,
                "wrong_type",
                f"{prefix}arguments.{name}: expected {kind or 'the expected values type'}, "
                f"got {type(value).__name__} {_show(value)}",
            )
        problem = _value_problem(value, acceptable, f"{prefix}arguments.{name}")
        if problem:
            return Verdict(False, "wrong_value", problem)
    for name, acceptable in expected.arguments.items():
        if name not in given and "" not in acceptable:
            return Verdict(
                False,
                "missing_argument",
                f"{prefix}arguments.{name}: missing (it may not be left out)",
            )
    return PASS


def _show_call(call: MadeCall) -> str:
    return f"{call.name}({_show(dict(call.arguments))})"


def _matching(ok: list[list[bool]], n_made: int) -> dict[int, int]:
    """The largest pairing of expected calls (rows) with made calls: expected -> made."""
    owner: dict[int, int] = {}  # made -> expected

    def place(j: int, seen: set[int]) -> bool:
        for i in range(n_made):
            if ok[j][i] and i not in seen:
                seen.add(i)
                if i not in owner or place(owner[i], seen):
                    owner[i] = j
                    return True
        return False

    for j in range(len(ok)):
        place(j, set())
    return {j: i for i, j in owner.items()}


def check_calls(
    made: Sequence[MadeCall], expected: Expected, tools: Sequence[Tool] = ()
) -> Verdict:
    """The calls made against what the case expects (calls, or no call).

    `set` (BFCL's rule) wants exactly the expected calls in any order; `exact` in this order;
    `in_order` these in order with others between; `any_order` each of these, others allowed.
    """
    if expected.no_call:
        if not made:
            return PASS
        shown = ", ".join(_show_call(c) for c in made)
        return Verdict(False, "unexpected_call", f"calls: expected no call, got {shown}")
    wanted = expected.calls
    if wanted is None:
        return PASS
    if not made and wanted:
        names = ", ".join(w.name for w in wanted)
        return Verdict(False, "no_call", f"calls: no call made, expected {names}")
    several = len(made) > 1 or len(wanted) > 1

    def prefix(i: int) -> str:
        return f"calls[{i}]." if several else ""

    if expected.order == "exact":
        for i in range(max(len(made), len(wanted))):
            if i >= len(made):
                return Verdict(False, "missing_call", f"calls[{i}]: missing {wanted[i].name}")
            if i >= len(wanted):
                return Verdict(False, "extra_call", f"calls[{i}]: extra {_show_call(made[i])}")
            verdict = check_call(made[i], wanted[i], tools, prefix(i))
            if not verdict.passed:
                return verdict
        return PASS
    if expected.order == "in_order":
        start = 0
        for j, call in enumerate(wanted):
            found = next(
                (i for i in range(start, len(made)) if check_call(made[i], call, tools).passed),
                None,
            )
            if found is None:
                return _closest(made, range(start, len(made)), call, tools, prefix, j)
            start = found + 1
        return PASS
    ok = [[check_call(m, w, tools).passed for m in made] for w in wanted]
    pairs = _matching(ok, len(made))
    unmatched_made = [i for i in range(len(made)) if i not in pairs.values()]
    if len(pairs) == len(wanted):
        if expected.order == "set" and unmatched_made:
            i = unmatched_made[0]
            return Verdict(False, "extra_call", f"calls[{i}]: extra call {_show_call(made[i])}")
        return PASS
    j = next(j for j in range(len(wanted)) if j not in pairs)
    return _closest(made, unmatched_made, wanted[j], tools, prefix, j)


def _closest(
    made: Sequence[MadeCall],
    candidates: Sequence[int] | range,
    wanted: ExpectedCall,
    tools: Sequence[Tool],
    prefix: Any,
    j: int,
) -> Verdict:
    """Why no call meets `wanted`: against the first candidate of the same name, else a missing
    call when every candidate is right for something else, else the first candidate's fault."""
    same = [i for i in candidates if _names_match(made[i].name, wanted.name, tools)]
    if same:
        return check_call(made[same[0]], wanted, tools, prefix(same[0]))
    if not candidates:
        return Verdict(False, "missing_call", f"calls: missing call {j}, {wanted.name}")
    first = candidates[0]
    return check_call(made[first], wanted, tools, prefix(first))


def _names_match(name: str, expected: str, tools: Sequence[Tool]) -> bool:
    if name in (expected, _renamed(expected)):
        return True
    return any(t.name == name and t.original_name == expected for t in tools)
