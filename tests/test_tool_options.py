"""Tool options: the same keywords, defaults and checks for every way of making a tool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentkit import Tool, ToolDefinitionError, tool

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = ROOT / "tests" / "typecheck" / "tool_options.py"
PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
DEFINITION: dict[str, Any] = {"name": "pay", "parameters": PARAMETERS}


def pay() -> str:
    """Pay."""
    return "paid"


def never(args: dict[str, Any]) -> bool:
    return False


OPTIONS: dict[str, Any] = {
    "sequential": True,
    "timeout": 2.5,
    "max_retries": 0,
    "strict": True,
    "idempotent": True,
    "requires_approval": never,
}


def made_every_way(**options: Any) -> dict[str, Tool]:
    return {
        "@tool": tool(**options)(pay),
        "from_function": Tool.from_function(pay, **options),
        "from_definition": Tool.from_definition(DEFINITION, pay, **options),
        "Tool": Tool(pay, name="pay", description="Pay.", parameters=PARAMETERS, **options),
    }


def settings(made: Tool) -> tuple[Any, ...]:
    return (
        made.sequential,
        made.timeout,
        made.max_retries,
        made.idempotent,
        made.requires_approval,
    )


def test_every_way_of_making_a_tool_takes_the_same_options() -> None:
    for way, made in made_every_way(**OPTIONS).items():
        assert settings(made) == (True, 2.5, 0, True, never), way


def test_options_left_out_take_the_same_defaults_everywhere() -> None:
    for way, made in made_every_way().items():
        assert settings(made) == (False, None, None, False, False), way
        assert made.requires_approval is False  # an identity the approval gate checks


def test_a_foreign_definition_can_be_held_to_strict_mode() -> None:
    loose = {
        "name": "f",
        "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}},
    }
    assert Tool.from_definition(loose).strict_report()  # built, unchecked
    with pytest.raises(ToolDefinitionError, match="cannot be strict; x: may be omitted"):
        Tool.from_definition(loose, strict=True)


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({"timeout": 0}, ["timeout: must be a number of seconds > 0, or None (got 0)"]),
        ({"timeout": "5"}, ["timeout: must be a number of seconds > 0, or None (got '5')"]),
        ({"max_retries": -1}, ["max_retries: must be an integer >= 0, or None (got -1)"]),
        ({"max_retries": 1.5}, ["max_retries: must be an integer >= 0, or None (got 1.5)"]),
        ({"sequential": "yes"}, ["sequential: must be True or False (got 'yes')"]),
        ({"strict": "no"}, ["strict: must be True, False or None (got 'no')"]),
        (
            {"idempotent": None, "requires_approval": "always"},
            [
                "idempotent: must be True or False (got None)",
                "requires_approval: must be True, False or a predicate of the arguments "
                "(got 'always')",
            ],
        ),
    ],
)
def test_an_option_that_cannot_work_is_refused_by_name(
    options: dict[str, Any], problems: list[str]
) -> None:
    for way in ("@tool", "from_function", "from_definition", "Tool"):
        with pytest.raises(ToolDefinitionError) as caught:
            made_every_way(**options)[way]
        assert (caught.value.tool, caught.value.problems) == ("pay", problems), way


def test_an_unknown_option_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError) as caught:

        @tool(sequental=True)  # type: ignore[call-overload,untyped-decorator]
        def spelled() -> None:
            """Misspelled."""

    assert str(caught.value) == (
        "tool 'spelled': unexpected option 'sequental' (options: idempotent, max_retries, "
        "requires_approval, sequential, strict, timeout)"
    )
    with pytest.raises(TypeError, match="unexpected option 'retries'"):
        Tool.from_definition(DEFINITION, retries=2)  # type: ignore[call-arg]


@pytest.mark.subprocess
def test_the_options_are_typed_for_mypy(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from agentkit import Tool, tool\n\n"
        "@tool(sequental=True)\n"
        "def a() -> None: ...\n\n"
        "@tool(timeout='5')\n"
        "def b() -> None: ...\n\n"
        "Tool.from_definition({}, requires_approval=1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(SNIPPET), str(wrong)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    # The snippet is clean; each mistake in the other file is caught, on its line.
    assert not [line for line in errors if "tool_options.py" in line], done.stdout
    found = {int(line.split(": error: ")[0].rsplit(":", 1)[-1]) for line in errors}
    assert found == {3, 6, 9}, done.stdout
    assert 'Unexpected keyword argument "sequental"' in done.stdout
    assert 'Argument "requires_approval" to "from_definition"' in done.stdout
