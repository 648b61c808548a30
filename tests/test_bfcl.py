"""Every BFCL function definition ingests; every ground-truth call validates against it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from agentkit import Tool, ToolArgumentsError

from support.environment import BFCL_DATA, require_bfcl
from support.helpers import check_schema

DATA = BFCL_DATA
FILES = ["simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance"]


@pytest.fixture(autouse=True)
def _data() -> None:
    require_bfcl()


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_definition_ingests_in_both_shapes() -> None:
    functions = tools = 0
    changed = 0
    for name in FILES:
        for entry in read(DATA / f"BFCL_v4_{name}.json"):
            for definition in entry["function"]:
                functions += 1
                made = Tool.from_definition(definition)
                changed += bool(made.normalization_report)
                for dialect in ("full", "inline"):
                    check_schema(made.parameters_schema(dialect))
                    legacy, function = made.to_legacy(dialect), made.to_function(dialect)
                    assert function["function"] == legacy
                    assert legacy["name"] == made.name
                tools += 1
    print(f"\nBFCL: {tools}/{functions} definitions ingested; {changed} needed normalizing")
    assert tools == functions > 1000


# Ground truth that contradicts its own function's schema: nothing valid can match it.
DATA_ERRORS = {
    "parallel_multiple_21 linear_regression_fit": "arrays given as expression strings",
    "parallel_multiple_94 sort_list": "strings given for an array of integers",
}


def first_acceptable(value: Any, required: Iterable[str] = ()) -> Any:
    """BFCL lists acceptable values per argument, nested dicts included; "" means omitted,
    which a required argument cannot be: it takes its first value that is not ""."""
    if isinstance(value, dict):
        chosen = {}
        for key, options in value.items():
            given = [o for o in options if o != ""]
            if given and (options[0] != "" or key in required):
                chosen[key] = first_acceptable(given[0])
        return chosen
    if isinstance(value, list):
        return [first_acceptable(v) if isinstance(v, dict) else v for v in value]
    return value


def test_every_ground_truth_answer_validates() -> None:
    checked = 0
    failures: dict[str, str] = {}
    for name in FILES[:-1]:
        answers = {
            a["id"]: a["ground_truth"]
            for a in read(DATA / "possible_answer" / f"BFCL_v4_{name}.json")
        }
        for entry in read(DATA / f"BFCL_v4_{name}.json"):
            tools = {}
            for definition in entry["function"]:
                made = Tool.from_definition(definition)
                tools[made.original_name] = made
            for call in answers[entry["id"]]:
                ((func, params),) = call.items()
                required = tools[func].parameters_schema().get("required", [])
                arguments = first_acceptable(params, required)
                checked += 1
                try:
                    tools[func].validate(arguments)
                except ToolArgumentsError as exc:
                    failures[f"{entry['id']} {func}"] = str(exc)
    print(f"\nBFCL: {checked - len(failures)}/{checked} ground-truth calls validate")
    assert checked > 1000
    # Exactly the known contradictions fail, and each for the reason named.
    assert sorted(failures) == sorted(DATA_ERRORS), failures
    assert "is not of type" in failures["parallel_multiple_21 linear_regression_fit"]
    assert '"apple" is not of type "integer"' in failures["parallel_multiple_94 sort_list"]
