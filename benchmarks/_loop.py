"""W1 and W2 share this: whole agent runs of every framework, interleaved, median per run."""

from __future__ import annotations

import asyncio

from benchmarks._agents import FRAMEWORKS
from benchmarks._common import Budget, Check, Row, median_us, time_async_rounds

PEERS = [name for name in FRAMEWORKS if name != "agentkit"]


def measure(workload: str, case: str, calls: int, budget: Budget, per_round: int) -> list[Row]:
    built = {name: make(calls) for name, make in FRAMEWORKS.items()}
    done = dict.fromkeys(built, 0)

    def check_executions(name: str, runs: int) -> None:
        done[name] += runs
        executed = built[name].executions()
        if executed != done[name] * calls:
            raise AssertionError(
                f"{workload} {name}: the tool ran {executed} times in {done[name]} runs "
                f"(expected {calls} per run)"
            )

    samples = asyncio.run(
        time_async_rounds(
            {name: c.run for name, c in built.items()},
            rounds=budget.n(5, 2),
            per_round=budget.n(per_round),
            warmup=budget.n(100, 10),
            after_round=check_executions,
        )
    )
    figures = {name: median_us(s) for name, s in samples.items()}
    row = Row(
        workload,
        case,
        "µs/run",
        figures["agentkit"],
        {p: figures[p] for p in PEERS},
        notes=[f"median of {len(samples['agentkit'])} runs each, after warm-up"],
    )
    fastest = min(PEERS, key=lambda p: figures[p])
    ratio = row.ratio(fastest)
    row.checks.append(
        Check(
            "at least 10x cheaper per run than the fastest peer",
            ratio is not None and ratio >= 10,
            f"fastest peer {fastest}: {ratio:.1f}x",
        )
    )
    return [row]
