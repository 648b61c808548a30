"""W4: argument validation: 20,000 validations of a small argument dict, µs per validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from typing_extensions import TypedDict

from benchmarks._common import Budget, Check, Row, time_total

VALIDATIONS = 20_000
ARGUMENTS = {"city": "Paris", "days": 3, "metric": True}


def forecast(city: str, days: int = 1, metric: bool = True) -> str:
    """Weather forecast for a city.

    Args:
        city: The city's name.
        days: How many days ahead.
        metric: Celsius rather than Fahrenheit.
    """
    return f"{city}: sunny for {days} days"


class _Forecast(TypedDict, total=False):
    city: str
    days: int
    metric: bool


def validators() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """One validator per contender, each built once, each called as its framework calls it."""
    import jsonschema
    import jsonschema_rs
    from agents.function_schema import function_schema
    from pydantic import TypeAdapter
    from pydantic_ai import Tool as PydanticAITool
    from smolagents import tool as smol_tool
    from smolagents.tools import validate_tool_arguments

    from agentkit import Tool, tool

    decorated = tool(forecast)
    foreign = Tool.from_definition(decorated.to_function(), handler=forecast)
    schema = decorated.parameters_schema()
    draft = jsonschema.Draft202012Validator(schema)
    rust = jsonschema_rs.validator_for(schema)
    adapter = TypeAdapter(_Forecast)
    pai = PydanticAITool(forecast).function_schema.validator
    # What a FunctionTool calls per invocation: its parameters model, with the JSON's keys.
    oai_params = function_schema(forecast).params_pydantic_model
    smol = smol_tool(forecast)

    def check(value: Any) -> Any:
        return value

    return {
        "agentkit (decorated)": decorated.check,
        "agentkit (foreign definition)": foreign.check,
        "pydantic TypeAdapter (floor)": adapter.validate_python,
        "jsonschema-rs": rust.validate,
        "jsonschema (compiled once)": draft.validate,
        "pydantic-ai": pai.validate_python,
        "openai-agents": lambda a: oai_params(**a),
        "smolagents": lambda a: check(validate_tool_arguments(smol, a)),
    }


def _loop(validate: Callable[[dict[str, Any]], Any], count: int) -> Callable[[], None]:
    arguments = ARGUMENTS

    def run() -> None:
        for _ in range(count):
            validate(arguments)

    return run


def run(budget: Budget) -> list[Row]:
    contenders = validators()
    # Each must accept the good arguments and refuse bad ones, or its speed means nothing.
    for name, validate in contenders.items():
        validate(ARGUMENTS)
        try:
            validate({"city": "Paris", "days": "three"})
        except Exception:
            pass
        else:
            raise AssertionError(f"W4 {name} accepted days='three'")
    count = budget.n(VALIDATIONS)
    seconds = {name: float("inf") for name in contenders}
    for _ in range(budget.n(9, 1)):  # interleaved rounds, best of each
        for name, validate in contenders.items():
            seconds[name] = min(seconds[name], time_total(_loop(validate, count), 1))
    per = {name: s / count * 1e6 for name, s in seconds.items()}
    decorated, foreign = per["agentkit (decorated)"], per["agentkit (foreign definition)"]
    others = {n: v for n, v in per.items() if not n.startswith("agentkit")}
    rows = [
        Row(
            "W4",
            "validate a small argument dict: decorated tool",
            "µs/validation",
            decorated,
            others,
        ),
        Row(
            "W4",
            "validate a small argument dict: foreign definition",
            "µs/validation",
            foreign,
            others,
        ),
    ]
    rows[0].notes.append(f"{count:,} validations per round, best of the rounds")
    floor = decorated / per["pydantic TypeAdapter (floor)"]
    rows[0].checks.append(
        Check(
            "decorated within 1.2x of a bare pydantic TypeAdapter",
            floor <= 1.2,
            f"agentkit / TypeAdapter = {floor:.2f}",
        )
    )
    peers = ["pydantic-ai", "openai-agents", "smolagents"]
    slowest_margin = min(per[p] / decorated for p in peers)
    rows[0].checks.append(
        Check(
            "decorated ahead of every peer",
            slowest_margin > 1,
            f"closest peer at {slowest_margin:.2f}x",
        )
    )
    rows[0].checks.append(
        Check(
            "decorated beats pydantic-ai",
            per["pydantic-ai"] > decorated,
            f"{decorated:.2f} vs {per['pydantic-ai']:.2f} µs",
        )
    )
    vs_python = per["jsonschema (compiled once)"] / foreign
    rows[1].checks.append(
        Check(
            "foreign definitions at least 30x faster than pure-Python jsonschema",
            vs_python >= 30,
            f"{vs_python:.0f}x",
        )
    )
    return rows
