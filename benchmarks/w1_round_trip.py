"""W1: one tool round trip: the model calls add(2, 3), then answers "5"."""

from __future__ import annotations

from benchmarks._common import Budget, Row
from benchmarks._loop import measure


def run(budget: Budget) -> list[Row]:
    return measure("W1", "one tool round trip (whole run)", 1, budget, per_round=300)
