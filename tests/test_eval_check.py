"""The checker agrees with BFCL's rules: on BFCL's own data every ground-truth call passes, and
each kind of mistake fails with its kind; and the rules one by one, on small calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentkit import Tool
from agentkit.eval import Case, Dataset, Expected, ExpectedCall, MadeCall, check_calls, standardize

from support.environment import BFCL_DATA, require_bfcl

CATEGORIES = ["simple_python", "multiple", "parallel", "parallel_multiple"]


@pytest.fixture(scope="module")
def bfcl() -> Dataset:
    require_bfcl()
    return Dataset.load(BFCL_DATA)


def _first(value: Any) -> Any:
    """The first acceptable value, BFCL's nested objects (`{key: [acceptable...]}`) unwrapped."""
    if isinstance(value, dict):
        return {k: _first(_given(v)) for k, v in value.items() if "" not in v}
    if isinstance(value, list):
        return [_first(v) for v in value]
    return value


def _given(acceptable: Any) -> Any:
    return next(a for a in acceptable if a != "")


def _tool(case: Case, name: str) -> Tool:
    return next(t for t in case.tools if t.original_name == name)


def truth(case: Case) -> list[MadeCall]:
    """What a right model says: each expected call under the name the model is offered, with
    the first acceptable value of each argument, leaving out those that may be left out (unless
    the schema requires them)."""
    assert case.expected.calls is not None
    made = []
    for call in case.expected.calls:
        tool = _tool(case, call.name)
        required = set(tool.parameters_schema().get("required", []))
        arguments = {
            name: _first(_given(acceptable))
            for name, acceptable in call.arguments.items()
            if "" not in acceptable or name in required
        }
        made.append(MadeCall(tool.name, arguments))
    return made


def cases_of(bfcl: Dataset, category: str) -> list[Case]:
    cases = [c for c in bfcl if c.category == category]
    assert cases, category
    return cases


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_ground_truth_call_passes(bfcl: Dataset, category: str) -> None:
    failures = []
    for case in cases_of(bfcl, category):
        verdict = check_calls(truth(case), case.expected, case.tools)
        if not verdict.passed:
            failures.append(f"{case.id}: {verdict.reason}")
    assert failures == []


def test_only_the_parallel_categories_allow_several_calls_in_one_generation(
    bfcl: Dataset,
) -> None:
    allowed = {(c.category, c.parallel_tool_calls) for c in bfcl}
    assert {c for c, parallel in allowed if parallel} == {"parallel", "parallel_multiple"}
    assert {c for c, parallel in allowed if parallel is None} == {
        "simple_python",
        "multiple",
        "irrelevance",
    }


def test_irrelevance_passes_without_a_call_and_fails_with_one(bfcl: Dataset) -> None:
    for case in cases_of(bfcl, "irrelevance"):
        assert check_calls([], case.expected, case.tools).passed
        tool = case.tools[0]
        verdict = check_calls([MadeCall(tool.name, {})], case.expected, case.tools)
        assert verdict.kind == "unexpected_call", case.id
        assert verdict.reason.startswith(f"calls: expected no call, got {tool.name}(")


# -- perturbations: each kind of mistake, made in every case where it can be ------------------

Perturb = Callable[[Case, list[MadeCall]], list[MadeCall] | None]


def _replace(calls: list[MadeCall], index: int, **arguments: Any) -> list[MadeCall]:
    changed = list(calls)
    changed[index] = MadeCall(calls[index].name, arguments)
    return changed


def wrong_value(case: Case, calls: list[MadeCall]) -> list[MadeCall] | None:
    """A value of the right type that no acceptable value matches."""
    call = calls[0]
    for name, value in call.arguments.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, str):
            other: Any = value + " and something else entirely"
        elif isinstance(value, (int, float)):
            other = type(value)(value * 7 + 12345)
        elif isinstance(value, list) and value:
            other = [*value, value[0]]
        else:
            continue
        return _replace(calls, 0, **{**call.arguments, name: other})
    return None


def missing_required(case: Case, calls: list[MadeCall]) -> list[MadeCall] | None:
    call = calls[0]
    required = _tool_named(case, call.name).parameters_schema().get("required", [])
    for name in required:
        if name in call.arguments:
            rest = {k: v for k, v in call.arguments.items() if k != name}
            return _replace(calls, 0, **rest)
    return None


def extra_argument(case: Case, calls: list[MadeCall]) -> list[MadeCall] | None:
    return _replace(calls, 0, **{**calls[0].arguments, "not_a_parameter": 1})


_WRONG_TYPES = [{"wrong": "type"}, "wrong type", 12345, ["wrong"], True]


def wrong_type(case: Case, calls: list[MadeCall]) -> list[MadeCall] | None:
    """A value of a type neither the schema nor any acceptable value has."""
    call = calls[0]
    schema = _tool_named(case, call.name).parameters_schema()["properties"]
    expected = next(e for e in case.expected.calls or () if _tool(case, e.name).name == call.name)
    python: dict[str, type | tuple[type, ...]] = {"string": str, "integer": int}
    python |= {"number": (int, float), "boolean": bool, "array": list, "object": dict}
    for name in call.arguments:
        declared = schema.get(name, {}).get("type")
        if not isinstance(declared, str) or declared not in python:
            continue
        seen = {type(a) for a in expected.arguments[name] if a != ""}
        for candidate in _WRONG_TYPES:
            wrong_for_schema = not isinstance(candidate, python[declared]) or (
                isinstance(candidate, bool) and declared != "boolean"
            )
            if type(candidate) not in seen and wrong_for_schema:
                if isinstance(candidate, (int, float)) and seen & {int, float}:
                    continue
                return _replace(calls, 0, **{**call.arguments, name: candidate})
    return None


def swapped_function(case: Case, calls: list[MadeCall]) -> list[MadeCall] | None:
    """The first call made to another of the case's functions (or to an unknown one)."""
    others = [t.name for t in case.tools if t.name != calls[0].name]
    changed = list(calls)
    changed[0] = MadeCall(others[0] if others else "not_a_function", calls[0].arguments)
    return changed


def dropped_call(case: Case, calls: list[MadeCall]) -> list[MadeCall] | None:
    return calls[:-1] if len(calls) > 1 else None


def _tool_named(case: Case, name: str) -> Tool:
    return next(t for t in case.tools if t.name == name)


PERTURBATIONS: list[tuple[Perturb, str]] = [
    (wrong_value, "wrong_value"),
    (missing_required, "missing_argument"),
    (extra_argument, "unknown_argument"),
    (wrong_type, "wrong_type"),
    (swapped_function, "wrong_function"),
    (dropped_call, "missing_call"),
]


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize(("perturb", "kind"), PERTURBATIONS, ids=[k for _, k in PERTURBATIONS])
def test_a_perturbed_call_fails_with_its_kind(
    bfcl: Dataset, category: str, perturb: Perturb, kind: str
) -> None:
    wrong, tried = [], 0
    for case in cases_of(bfcl, category):
        calls = perturb(case, truth(case))
        if calls is None:
            continue
        tried += 1
        verdict = check_calls(calls, case.expected, case.tools)
        if verdict.passed or verdict.kind != kind:
            wrong.append(f"{case.id}: {verdict}")
    assert wrong == []
    # Every perturbation applies to most cases (a dropped call only where there are several).
    assert tried >= (len(cases_of(bfcl, category)) // 2 if kind != "missing_call" else 1) or (
        kind == "missing_call" and category in ("simple_python", "multiple")
    )


# -- the rules one by one ----------------------------------------------------------------------

WEATHER = Tool.from_definition(
    {
        "name": "weather.get",
        "description": "Weather in a city.",
        "parameters": {
            "type": "dict",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "scale": {"type": "float"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["city"],
        },
    }
)


def expect(**arguments: list[Any]) -> Expected:
    return Expected(calls=(ExpectedCall("weather.get", arguments),))


def verdict_of(arguments: dict[str, Any], expected: Expected, name: str = "weather_get") -> Any:
    return check_calls([MadeCall(name, arguments)], expected, [WEATHER])


def test_strings_are_compared_as_bfcl_normalises_them() -> None:
    assert standardize("April 1, 2024") == standardize("april 1 2024") == "april12024"
    assert standardize("It's") == 'it"s'
    expected = expect(city=["Paris, France"], days=["", 3])
    assert verdict_of({"city": "paris france"}, expected).passed
    assert verdict_of({"city": "PARIS-FRANCE."}, expected).passed


def test_a_wrong_string_says_which_argument_and_what_was_acceptable() -> None:
    verdict = verdict_of({"city": "Paris"}, expect(city=["Paris, France", "paris, france"]))
    assert (verdict.kind, verdict.reason) == (
        "wrong_value",
        'arguments.city: "Paris" not in ["Paris, France", "paris, france"]',
    )


def test_the_dotted_name_matches_as_given_or_as_offered() -> None:
    expected = expect(city=["Rome"])
    assert verdict_of({"city": "Rome"}, expected, "weather_get").passed
    assert verdict_of({"city": "Rome"}, expected, "weather.get").passed
    wrong = verdict_of({"city": "Rome"}, expected, "weather_put")
    assert (wrong.kind, wrong.reason) == (
        "wrong_function",
        'name: "weather_put" is not "weather.get"',
    )


def test_an_integer_passes_for_a_float_but_not_a_float_for_an_integer() -> None:
    assert verdict_of({"city": "Rome", "scale": 2}, expect(city=["Rome"], scale=[2.0])).passed
    verdict = verdict_of({"city": "Rome", "days": 2.5}, expect(city=["Rome"], days=[2]))
    assert (verdict.kind, verdict.reason) == (
        "wrong_type",
        "arguments.days: expected integer, got float 2.5",
    )


def test_a_boolean_is_not_an_integer() -> None:
    verdict = verdict_of({"city": "Rome", "days": True}, expect(city=["Rome"], days=[1]))
    assert verdict.kind == "wrong_type"


def test_lists_match_item_by_item_in_order() -> None:
    expected = expect(city=["Rome"], tags=[["Sunny Day", "wind"]])
    assert verdict_of({"city": "Rome", "tags": ["sunny day", "Wind"]}, expected).passed
    assert (
        verdict_of({"city": "Rome", "tags": ["wind", "sunny day"]}, expected).kind == "wrong_value"
    )


def test_an_argument_left_out_must_be_allowed_to_be() -> None:
    verdict = verdict_of({"city": "Rome"}, expect(city=["Rome"], days=[3]))
    assert (verdict.kind, verdict.reason) == (
        "missing_argument",
        "arguments.days: missing (it may not be left out)",
    )
    assert verdict_of({}, expect(city=["", "Rome"])).reason == "arguments.city: missing (required)"


def test_nested_objects_are_checked_key_by_key_with_a_path() -> None:
    tool = Tool.from_definition(
        {
            "name": "book",
            "parameters": {
                "type": "dict",
                "properties": {"stay": {"type": "dict", "properties": {}}},
                "required": ["stay"],
            },
        }
    )
    expected = Expected(
        calls=(ExpectedCall("book", {"stay": [{"city": ["Rome"], "nights": [2, ""]}]}),)
    )
    ok = check_calls([MadeCall("book", {"stay": {"city": "rome"}})], expected, [tool])
    assert ok.passed
    bad = check_calls([MadeCall("book", {"stay": {"city": "Oslo"}})], expected, [tool])
    assert (bad.kind, bad.reason) == ("wrong_value", 'arguments.stay.city: "Oslo" not in ["Rome"]')


def test_parallel_calls_match_in_any_order_and_say_what_is_extra_or_missing() -> None:
    expected = Expected(
        calls=(
            ExpectedCall("weather.get", {"city": ["Rome"]}),
            ExpectedCall("weather.get", {"city": ["Oslo"]}),
        )
    )
    rome, oslo = (
        MadeCall("weather_get", {"city": "Rome"}),
        MadeCall("weather_get", {"city": "Oslo"}),
    )
    assert check_calls([oslo, rome], expected, [WEATHER]).passed
    missing = check_calls([oslo], expected, [WEATHER])
    assert missing.kind == "missing_call"
    extra = check_calls([oslo, rome, rome], expected, [WEATHER])
    assert (extra.kind, extra.reason) == (
        "extra_call",
        'calls[2]: extra call weather_get({"city": "Rome"})',
    )
    assert check_calls([], expected, [WEATHER]).kind == "no_call"


def test_trajectories_exact_in_order_and_any_order() -> None:
    a, b, c = (MadeCall("weather_get", {"city": x}) for x in ("A", "B", "C"))
    wanted = tuple(ExpectedCall("weather.get", {"city": [x]}) for x in ("A", "B"))

    def verdict(order: Any, made: list[MadeCall]) -> Any:
        return check_calls(made, Expected(calls=wanted, order=order), [WEATHER])

    assert verdict("exact", [a, b]).passed
    assert verdict("exact", [b, a]).kind == "wrong_value"
    assert verdict("exact", [a, b, c]).kind == "extra_call"
    assert verdict("in_order", [a, c, b]).passed
    assert not verdict("in_order", [b, a]).passed
    assert verdict("any_order", [c, b, a]).passed
    assert verdict("any_order", [c, b]).kind == "wrong_value"
