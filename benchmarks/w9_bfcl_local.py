"""W9: BFCL on the embedded model through `agentkit eval`: accuracy per category, every call
valid under the grammar, and tokens a second in the runtime's slots against one at a time.

The evaluation's results go to `benchmarks/results/w9_bfcl_local.jsonl` as each case finishes,
so a full run (1,240 cases, hours on 2 busy cores) that is stopped continues where it stopped
when run again with the same settings (set AGENTKIT_W9_OUTPUT for another file).
`AGENTKIT_W9_THREADS=1` decodes on one thread: on a busy machine, many times faster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks._common import Budget, Check, Row, Unavailable

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AGENTKIT_BFCL_DATA", ROOT.parent / "shared" / "data" / "bfcl"))
OUTPUT = Path(
    os.environ.get("AGENTKIT_W9_OUTPUT", Path(__file__).parent / "results" / "w9_bfcl_local.jsonl")
)
THREADS = int(os.environ.get("AGENTKIT_W9_THREADS", "0")) or None
"""Decoding threads (AGENTKIT_W9_THREADS); the runtime's default, every core, when unset. On a
machine busy with other work, 1 is many times faster: llama.cpp's threads wait for each other
by spinning, and a spinning thread that lost its core holds every step up."""
SPEED_SAMPLE = "simple_python"
"""The category whose first cases measure the slots' speed-up (one call each, alike in size)."""


def interleaved(dataset: Any) -> Any:
    """The cases taken a category at a time, round robin: a run stopped early has some of each."""
    from agentkit.eval import Dataset

    by: dict[str, list[Any]] = {}
    for case in dataset:
        by.setdefault(case.category, []).append(case)
    order = []
    for i in range(max(len(cases) for cases in by.values())):
        order += [by[c][i] for c in sorted(by) if i < len(by[c])]
    return Dataset(order, dataset.name)


def run(budget: Budget) -> list[Row]:
    try:
        from agentkit.runtimes.llama_cpp import LlamaCpp
    except ImportError as exc:
        raise Unavailable(f"needs the local extra ({exc.name})") from None
    if not DATA.is_dir():
        raise Unavailable(f"no BFCL data at {DATA} (set AGENTKIT_BFCL_DATA)")
    from agentkit.eval import Dataset, evaluate_sync

    every = Dataset.load(DATA)
    dataset = interleaved(every.select(limit=budget.n(10_000, 1)))
    sample = every.select(categories=[SPEED_SAMPLE], limit=budget.n(8, 2))
    import anyio

    local = LlamaCpp(n_threads=THREADS)
    try:
        # Quick runs keep no file: their figures are not the full run's to resume.
        output = None if budget.quick else OUTPUT
        report = evaluate_sync(local, dataset, output=output, progress=None)
    finally:
        anyio.run(local.aclose)
    # Each side of the speed comparison on a runtime of its own: in one runtime, the side run
    # second would find every prompt already in a slot's cache.
    speeds = []
    for concurrency in (None, 1):
        local = LlamaCpp(n_threads=THREADS)
        try:
            speeds.append(evaluate_sync(local, sample, concurrency=concurrency, progress=False))
        finally:
            anyio.run(local.aclose)
    batched, alone = speeds
    rows = [
        Row(
            workload="W9",
            case=f"BFCL {score.category} ({score.total} cases), greedy, the profile's "
            "tool choice (required)",
            unit="% right",
            agentkit=100 * score.accuracy,
            lower_is_better=False,
        )
        for score in report.by_category()
    ]
    calls, invalid = _validity(every, report)
    rows[-1].checks.append(
        Check("every call valid against its tool", not invalid, invalid or f"{calls} calls")
    )
    failures = ", ".join(f"{k} {len(v)}" for k, v in report.failures_by_kind().items())
    rows[-1].notes.append(f"failures by kind: {failures or 'none'}")
    speeds = {}
    for name, part in (("slots", batched), ("alone", alone)):
        speeds[name] = part.tokens_per_second or 0.0
    rows.append(
        Row(
            workload="W9",
            case=f"{len(sample)} {SPEED_SAMPLE} cases: completion tokens/s, {batched.concurrency} "
            "at once (the runtime's slots) vs one at a time",
            unit="tokens/s",
            agentkit=speeds["slots"],
            peers={"one at a time": speeds["alone"]},
            lower_is_better=False,
            checks=[
                Check(
                    "the same verdicts in slots as one at a time",
                    [r.passed for r in batched.results] == [r.passed for r in alone.results],
                    f"{batched.passed} and {alone.passed} of {len(sample)} right",
                )
            ],
            notes=[
                f"speed-up in slots: {speeds['slots'] / speeds['alone']:.2f}x"
                if speeds["alone"]
                else "speed-up: not measured"
            ],
        )
    )
    return rows


def _validity(every: Any, report: Any) -> tuple[int, str]:
    """Calls made, and the first that its tool refuses (the grammar's job to prevent)."""
    tools = {case.id: case.tools for case in every}
    calls = 0
    for result in report.results:
        for call in result.calls:
            calls += 1
            tool = next((t for t in tools[result.id] if t.name == call["name"]), None)
            if tool is None:
                return calls, f"{result.id}: {call['name']} is not one of its tools"
            try:
                tool.validate(call["arguments"])
            except Exception as exc:
                return calls, f"{result.id}: {exc}"
    return calls, ""
