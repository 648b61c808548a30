"""The ready-made tools in tools/: calculator and clock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentkit import Agent, ScriptedRuntime, ToolRetry
from agentkit.tools.loader import load_tools

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calculate():  # type: ignore[no-untyped-def]
    (tool,) = load_tools(ROOT / "tools" / "calculator.py")
    return tool


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("37 * 41", "1517"),
        ("37*41=", "1517"),
        ("(2 + 3) ** 2 / 5", "5"),
        ("2 ^ 10", "1024"),
        ("7 / 2", "3.5"),
        ("-3 + sqrt(16)", "1"),
        ("round(pi, 3)", "3.142"),
        ("10 // 3 + 10 % 3", "4"),
    ],
)
def test_calculator_computes(calculate, expression: str, value: str) -> None:  # type: ignore[no-untyped-def]
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "unsupported expression"),
        ("open('/etc/passwd')", "unsupported expression"),
        ("1 / 0", "division by zero"),
        ("9 ** 9 ** 9", "exponent"),
        ("2 +", "not an arithmetic expression"),
        ("x + 1", "unsupported expression"),
    ],
)
def test_calculator_refuses(calculate, expression: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ToolRetry, match=reason):
        calculate(expression)


def test_clock_names_the_zone() -> None:
    (current_time,) = load_tools(ROOT / "tools" / "clock.py")
    text = current_time("Asia/Tokyo")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST \(Asia/Tokyo\)", text)
    assert current_time("tokyo").endswith("(Asia/Tokyo)")
    with pytest.raises(ToolRetry, match="unknown time zone 'Atlantis'"):
        current_time("Atlantis")


def test_bad_expression_goes_back_to_the_model_as_a_message() -> None:
    tools = load_tools(ROOT / "tools" / "calculator.py")
    runtime = ScriptedRuntime(
        [ScriptedRuntime.call("calculate", expression="2 +"), ScriptedRuntime.answer("?")]
    )
    result = Agent(runtime, tools=tools).run_sync("2 + ?")
    assert "could not calculate '2 +'" in result.messages[-2].content


def test_loader_errors_are_clear(tmp_path: Path) -> None:
    from agentkit import ConfigurationError

    with pytest.raises(ConfigurationError, match="no such file"):
        load_tools(tmp_path / "missing.py")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigurationError, match="defines no @tool function"):
        load_tools(empty)
