"""Checked by mypy --strict in tests/test_tool_options.py: every tool option is typed."""

from __future__ import annotations

from typing import Any

from typing_extensions import Unpack

from agentkit import Tool, tool
from agentkit.tools import ToolOptions


@tool
def bare(a: int) -> int:
    """Bare."""
    return a


@tool(
    name="shout",
    description="Shout.",
    sequential=True,
    timeout=3,
    max_retries=0,
    strict=True,
    idempotent=True,
    requires_approval=lambda args: bool(args["loud"]),
)
def shout(loud: bool) -> str:
    """Shout."""
    return "!" if loud else "."


made = Tool.from_function(lambda: "x", name="x", timeout=2.5, requires_approval=True)
foreign = Tool.from_definition(
    {"name": "f", "parameters": {"type": "object"}}, None, sequential=True, strict=False
)
direct = Tool(None, name="g", description="", parameters={"type": "object"}, timeout=3)


def slow_tool(function: Any, **options: Unpack[ToolOptions]) -> Tool:
    options.setdefault("timeout", 60)
    return Tool.from_function(function, **options)


seconds: float | None = shout.timeout
retries: int | None = made.max_retries
alone: bool = foreign.sequential
