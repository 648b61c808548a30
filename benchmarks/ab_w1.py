"""W1 (one tool round trip, whole run) on this tree's agentkit against a git ref's, in one
process, interleaved in small blocks so that load from elsewhere on the machine falls on both
alike. Used to check that a change costs nothing when its feature is off (e.g. telemetry with
no tracer provider configured).

    python -m benchmarks.ab_w1 main               # median µs per run of each, and the ratio
    python -m benchmarks.ab_w1 main --imported    # with OpenTelemetry imported, no provider set
    python -m benchmarks.ab_w1 main --calls 10    # W2's shape: ten parallel calls in one step

The ref's `agentkit/` is extracted with `git archive` into a temporary directory and renamed
`agentkit_base` (its imports rewritten), so that both can be imported side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def extract(ref: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "archive", ref, "agentkit"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / "agentkit_base"
    (into / "agentkit").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\b(from|import) agentkit\b", r"\1 agentkit_base", text)
        path.write_text(text.replace('"agentkit.', '"agentkit_base.'))


def case(package: str, calls: int = 1) -> Callable[[], Awaitable[None]]:
    agentkit: Any = importlib.import_module(package)
    api: Any = importlib.import_module(package + ".model_api")

    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: The first number.
            b: The second number.
        """
        return a + b

    def model(request: Any) -> Any:
        last = request.messages[-1]
        if last.role == "tool":
            return api.Generation(response=last.content, finish_reason="stop")
        made = [
            api.ToolCall(id=f"c{n}", name="add", arguments={"a": 2, "b": 3 + n})
            for n in range(calls)
        ]
        return api.Generation(tool_calls=made, finish_reason="tool_calls")

    agent = agentkit.Agent(agentkit.FunctionRuntime(model), tools=[agentkit.tool(add)])

    async def run() -> None:
        result = await agent.run("Add the numbers with the add tool.")
        assert result.output == str(4 + calls), result.output  # the last call's result

    return run


async def measure(blocks: int, per_block: int, calls: int = 1) -> dict[str, float]:
    cases = {"base": case("agentkit_base", calls), "this": case("agentkit", calls)}
    for run in cases.values():
        for _ in range(300):
            await run()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    clock = time.perf_counter
    for block in range(blocks):
        for name in list(cases) if block % 2 == 0 else list(reversed(cases)):
            run, out = cases[name], samples[name]
            for _ in range(per_block):
                start = clock()
                await run()
                out.append(clock() - start)
    return {name: statistics.median(s) * 1e6 for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="the git ref to compare with (e.g. main)")
    parser.add_argument("--imported", action="store_true", help="import OpenTelemetry first")
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--per-block", type=int, default=50)
    parser.add_argument("--calls", type=int, default=1, help="tool calls in the first step")
    args = parser.parse_args()
    if args.imported:
        importlib.import_module("opentelemetry.trace")
    with tempfile.TemporaryDirectory() as tmp:
        extract(args.ref, Path(tmp))
        sys.path.insert(0, tmp)
        figures = asyncio.run(measure(args.blocks, args.per_block, args.calls))
    base, this = figures["base"], figures["this"]
    print(f"{args.ref} {base:.1f} µs/run  this tree {this:.1f} µs/run  ratio {this / base:.3f}")


if __name__ == "__main__":
    main()
