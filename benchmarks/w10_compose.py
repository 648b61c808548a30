"""W10: runtime wrappers: what Fallback, RateLimit and Cached add to a request, runtime alone = 1.

One request is one `generate` call on an in-process runtime that answers at once (a
`FunctionRuntime` returning a fixed generation), so what is measured is the wrapper's own work:
the checks, the breaker or the window, the copy that marks who answered. The cases are a list of
(label, factory) rows, each factory wrapping the bare runtime; every case runs in the same
rounds, interleaved, and is reported against the bare runtime of the same run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agentkit import (
    Cached,
    Fallback,
    FunctionRuntime,
    Generation,
    ModelRequest,
    RateLimit,
    Runtime,
    Usage,
)
from benchmarks._common import Budget, Check, Row, median_us, time_async_rounds

GENERATION = Generation(response="5", usage=Usage.of(20, 1), finish_reason="stop")
REQUEST = ModelRequest(messages=[{"role": "user", "content": "What is 2 + 3?"}])  # type: ignore[list-item]
HIGH = 10**9
"""Limits no run here comes near: the window is counted, nothing ever waits."""

CASES: list[tuple[str, Callable[[Runtime], Runtime]]] = [
    ("runtime alone", lambda runtime: runtime),
    ("Fallback([runtime])", lambda runtime: Fallback([runtime])),
    (
        "RateLimit(runtime, high limits)",
        lambda runtime: RateLimit(
            runtime, requests_per_minute=HIGH, tokens_per_minute=HIGH, max_concurrency=HIGH
        ),
    ),
    # Every request after the first is a hit: what a cached answer costs instead of a call.
    ("Cached(runtime), a hit", lambda runtime: Cached(runtime, sampled=True)),
    (
        "Fallback([RateLimit(runtime), runtime])",
        lambda runtime: Fallback(
            [RateLimit(runtime, requests_per_minute=HIGH, tokens_per_minute=HIGH), runtime]
        ),
    ),
]
"""(label, factory): the first is the baseline; a row added here is measured and reported."""

OVERHEAD_TARGET = 25.0
"""µs a wrapper in the path of every call may add to a request."""
UNTARGETED = {"Cached(runtime), a hit"}
"""Rows the target does not apply to: a cache hit stands in for a model call, not beside one."""


def run(budget: Budget) -> list[Row]:
    inner = FunctionRuntime(lambda request: GENERATION)
    runtimes = {label: make(inner) for label, make in CASES}

    def case(runtime: Runtime) -> Callable[[], Awaitable[None]]:
        async def one() -> None:
            await runtime.generate(REQUEST)

        return one

    def forget(label: str, calls: int) -> None:
        inner.requests.clear()  # the test double keeps every request; not the wrapper's cost

    samples = asyncio.run(
        time_async_rounds(
            {label: case(runtime) for label, runtime in runtimes.items()},
            rounds=budget.n(5, 2),
            per_round=budget.n(2000),
            warmup=budget.n(500, 20),
            after_round=forget,
        )
    )
    figures = {label: median_us(s) for label, s in samples.items()}
    baseline_label = CASES[0][0]
    baseline = figures[baseline_label]
    rows = []
    for label, figure in figures.items():
        row = Row("W10", f"one request: {label}", "µs/request", figure)
        if label != baseline_label:
            added = figure - baseline
            row.notes.append(
                f"{label}: {figure / baseline:.2f}x the runtime alone, +{added:.1f} µs"
            )
            if label in UNTARGETED:
                rows.append(row)
                continue
            row.checks.append(
                Check(
                    f"{label} adds under {OVERHEAD_TARGET:g} µs a request",
                    added < OVERHEAD_TARGET,
                    f"+{added:.1f} µs",
                )
            )
        else:
            row.notes.append(f"median of {len(samples[label])} requests each, after warm-up")
        rows.append(row)
    return rows
