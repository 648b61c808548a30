"""W2: ten parallel tool calls in one step, then the answer."""

from __future__ import annotations

from benchmarks._common import Budget, Row
from benchmarks._loop import measure


def run(budget: Budget) -> list[Row]:
    return measure("W2", "ten parallel calls, then the answer", 10, budget, per_round=150)
