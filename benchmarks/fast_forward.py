"""Fast-forwarded tokens on the embedded model: time to a complete answer, with and without.

`python -m benchmarks.fast_forward [--quick] [--bench N] [--rounds N] [--json PATH]`

For each schema (the answer schemas of `tests/support/answer_schemas.py`, then `--bench`
schemas of `../shared/data/jsonschemabench`, a fixed-seed sample over the six subsets of those
the grammar engine compiles), the greedy answer is generated with fast-forwarding on and off,
rounds alternated so that load from elsewhere falls on both sides. Per schema: the wall time
to the complete answer (median of the rounds), completion tokens a second, the share of
tokens the grammar forced (from the runtime's debug log), and whether both answers are the
same text. W8 runs `compare` on three answer schemas.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from benchmarks.grammar_engines import DATA, SUBSETS

BENCH_PROMPT = "Write an example of the object described, with realistic values."
MAX_TOKENS = 256


@dataclass
class Compared:
    """One schema's greedy answer, fast-forwarded and token by token."""

    schema: str
    tokens: int
    """Completion tokens of the fast-forwarded answer."""
    forced: int
    """Of them, those the grammar forced."""
    seconds_on: float
    seconds_off: float
    tokens_off: int
    same: bool
    """Both answers are the same text."""

    @property
    def speedup(self) -> float:
        return self.seconds_off / self.seconds_on


class Forced(logging.Handler):
    """Reads the fast-forwarded count off the runtime's debug record of each generation."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.last = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.last = getattr(record, "fast_forwarded_tokens", self.last)


def answer_schemas() -> dict[str, tuple[str, dict[str, Any]]]:
    tests = Path(__file__).resolve().parents[1] / "tests"
    sys.path.insert(0, str(tests))
    try:
        from support.answer_schemas import ANSWER_SCHEMAS
    finally:
        sys.path.remove(str(tests))
    return dict(ANSWER_SCHEMAS)


def bench_schemas(local: Any, n: int, seed: int = 7) -> dict[str, tuple[str, dict[str, Any]]]:
    """`n` JSONSchemaBench schemas the local runtime takes, spread over the subsets."""
    rng = random.Random(seed)
    groups = {s: sorted(DATA.glob(f"{s}*.json")) for s in SUBSETS}
    for group in groups.values():
        rng.shuffle(group)
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}
    while len(chosen) < n and any(groups.values()):
        # One schema from each subset in turn.
        for group in groups.values():
            if not group or len(chosen) >= n:
                continue
            path = group.pop()
            schema = json.loads(path.read_text())["schema"]
            try:
                local.check_response_format({"type": "json_schema", "json_schema": schema})
            except Exception:  # refused: not one the runtime takes
                continue
            chosen[path.stem] = (BENCH_PROMPT, schema)
    return chosen


async def _answer(local: Any, prompt: str, schema: dict[str, Any]) -> tuple[float, Any]:
    from agentkit import Message, ModelRequest

    request = ModelRequest(
        messages=[Message.user(prompt)],
        response_format={"type": "json_schema", "json_schema": schema},
        temperature=0.0,
        max_tokens=MAX_TOKENS,
    )
    started = time.perf_counter()
    generation = await local.generate(request)
    return time.perf_counter() - started, generation


def compare(
    local: Any, schemas: dict[str, tuple[str, dict[str, Any]]], rounds: int
) -> list[Compared]:
    """Each schema's greedy answer on `local`, fast-forwarding switched on and off by turns."""
    logger = logging.getLogger("agentkit.runtimes")
    forced = Forced()
    level = logger.level
    logger.addHandler(forced)
    logger.setLevel(logging.DEBUG)
    results: list[Compared] = []
    try:
        for name, (prompt, schema) in schemas.items():
            on: list[float] = []
            off: list[float] = []
            for _ in range(rounds):
                local.fast_forward = True
                forced.last = 0
                seconds, fast = anyio.run(_answer, local, prompt, schema)
                on.append(seconds)
                local.fast_forward = False
                seconds, slow = anyio.run(_answer, local, prompt, schema)
                off.append(seconds)
            results.append(
                Compared(
                    schema=name,
                    tokens=fast.usage.completion_tokens,
                    forced=forced.last,
                    seconds_on=statistics.median(on),
                    seconds_off=statistics.median(off),
                    tokens_off=slow.usage.completion_tokens,
                    same=fast.response == slow.response,
                )
            )
    finally:
        local.fast_forward = True
        logger.removeHandler(forced)
        logger.setLevel(level)
    return results


def table(results: list[Compared]) -> str:
    lines = [
        "| Schema | Tokens (off) | Forced | Answer s, on / off | Tokens/s, on / off | Speedup "
        "| Same text |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.schema} | {r.tokens} ({r.tokens_off}) | {r.forced / r.tokens:.0%} "
            f"| {r.seconds_on:.2f} / {r.seconds_off:.2f} "
            f"| {r.tokens / r.seconds_on:.0f} / {r.tokens_off / r.seconds_off:.0f} "
            f"| {r.speedup:.2f}x | {'yes' if r.same else 'no'} |"
        )
    tokens = sum(r.tokens for r in results)
    on = sum(r.seconds_on for r in results)
    off = sum(r.seconds_off for r in results)
    lines.append(
        f"| **all {len(results)}** | {tokens} ({sum(r.tokens_off for r in results)}) "
        f"| {sum(r.forced for r in results) / tokens:.0%} | {on:.2f} / {off:.2f} "
        f"| {tokens / on:.0f} / {sum(r.tokens_off for r in results) / off:.0f} "
        f"| {off / on:.2f}x | {sum(r.same for r in results)} of {len(results)} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fast_forward")
    parser.add_argument("--quick", action="store_true", help="three schemas, one round")
    parser.add_argument("--bench", type=int, default=12, help="JSONSchemaBench schemas")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from agentkit.runtimes.llama_cpp import LlamaCpp

    local = LlamaCpp(parallel=1)
    try:
        schemas = answer_schemas()
        if args.quick:
            schemas = {k: schemas[k] for k in ("flat-object", "enum", "nested-object")}
        bench = 1 if args.quick else args.bench
        if DATA.is_dir() and bench:
            schemas.update(bench_schemas(local, bench))
        results = compare(local, schemas, 1 if args.quick else args.rounds)
    finally:
        anyio.run(local.aclose)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
