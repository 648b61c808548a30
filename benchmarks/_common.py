"""What every workload module shares: the result row, targets, timing helpers.

A workload is a module `benchmarks/wN_name.py` with a one-line docstring (its title) and

    def run(budget: Budget) -> list[Row]: ...

It raises `Unavailable` when it cannot run here (a missing extra, a runtime not written yet).
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

# Peers' tracing and telemetry off before any of them is imported.
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.setdefault("LANGSMITH_TRACING", "false")
os.environ.setdefault("LANGCHAIN_TRACING_V2", "false")
os.environ.setdefault("LOGFIRE_SEND_TO_LOGFIRE", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


class Unavailable(Exception):
    """The workload cannot run here; the message says why (it is shown in the table)."""


@dataclass
class Check:
    """One target, and whether this run met it."""

    target: str
    met: bool
    detail: str


@dataclass
class Row:
    """One line of the table: a case of a workload, agentkit's figure and each peer's."""

    workload: str
    case: str
    unit: str
    agentkit: float | None
    peers: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    lower_is_better: bool = True

    def ratio(self, peer: str) -> float | None:
        """Peer / agentkit: above 1 means agentkit is cheaper."""
        value = self.peers.get(peer)
        if value is None or not self.agentkit:
            return None
        return value / self.agentkit

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratios"] = {p: self.ratio(p) for p in self.peers}
        return out


@dataclass
class Budget:
    """How hard to try: `quick` shrinks every loop (a smoke run, figures not published)."""

    quick: bool = False

    def n(self, full: int, quick: int | None = None) -> int:
        return (quick if quick is not None else max(1, full // 20)) if self.quick else full


def median_us(samples: Iterable[float]) -> float:
    return statistics.median(samples) * 1e6


async def time_async_rounds(
    cases: dict[str, Callable[[], Awaitable[None]]],
    *,
    rounds: int,
    per_round: int,
    warmup: int,
    after_round: Callable[[str, int], None] | None = None,
) -> dict[str, list[float]]:
    """Time single calls of each case, interleaved in rounds so that noise from other work on
    the machine falls on every case alike. Returns seconds per call, per case."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for name, case in cases.items():
        for _ in range(warmup):
            await case()
        if after_round:
            after_round(name, warmup)
    clock = time.perf_counter
    for _ in range(rounds):
        for name, case in cases.items():
            out = samples[name]
            for _ in range(per_round):
                start = clock()
                await case()
                out.append(clock() - start)
            if after_round:
                after_round(name, per_round)
    return samples


def time_total(function: Callable[[], Any], repeat: int) -> float:
    """Best of `repeat` timings of one call of `function` (which loops itself); seconds."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


async def seconds_per_token(local: Any, request: Any, tokens: int) -> float:
    """Seconds per decoded token of a streamed generation, from its first chunk to its last;
    the request must generate exactly `tokens` tokens."""
    first = last = 0.0
    count = 0
    async for chunk in local.stream(request):
        last = time.perf_counter()
        first = first or last
        if chunk.usage is not None:
            count = chunk.usage.completion_tokens
    assert count == tokens, count
    return (last - first) / (tokens - 1)


def at_least(ratio: float | None, bound: float) -> bool:
    return ratio is not None and ratio >= bound


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
