"""`agentkit eval DATASET...`: how well a model calls the tools, case by case, with a report;
and `agentkit eval compare A.jsonl B.jsonl`: two runs side by side."""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

from agentkit.agent import Agent
from agentkit.cli.compose import COMPOSITION_FLAGS
from agentkit.cli.mcp import add_mcp_options, mcp_sources
from agentkit.cli.options import (
    add_runtime_options,
    add_sampling_options,
    build_runtime,
    load_agent,
    refuse_with_agents,
    sampling,
)
from agentkit.errors import UserError
from agentkit.eval import Dataset, Report, compare, evaluate
from agentkit.eval.results import read_results
from agentkit.model_api import SAMPLING_FIELDS
from agentkit.runtimes.base import Runtime
from agentkit.usage import ModelPrice

__all__ = ["add_parser"]

_DEFINED_BY_AGENT = (
    "--runtime",
    "--model",
    "--cache",
    *COMPOSITION_FLAGS,
    "--tools",
    "--mcp-stdio",
    "--mcp-http",
    "--tool-choice",
    "--parallel-tool-calls",
    *(f"--{name.replace('_', '-')}" for name in SAMPLING_FIELDS),
)
"""What `--agents` refuses: its agent brings its runtime, tools and settings."""

EXIT_BELOW = 1
"""The exit status when accuracy is below `--min-accuracy`."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit eval`: its options and handler."""
    command = commands.add_parser(
        "eval",
        help="evaluate how a model calls tools (or `eval compare A.jsonl B.jsonl`)",
        description="Run a dataset's cases and check each one; `agentkit eval compare A B` "
        "compares two runs' JSON Lines outputs.",
    )
    command.add_argument(
        "datasets",
        nargs="+",
        metavar="DATASET",
        help="JSON Lines cases, BFCL files, or a folder of BFCL files",
    )
    add_runtime_options(command)
    command.add_argument("--tools", metavar="FILE", help="tools of the cases that bring none")
    add_mcp_options(command)
    command.add_argument(
        "--agents", metavar="FILE", help="evaluate whole runs of the `agent` this file defines"
    )
    command.add_argument("--output", metavar="FILE", help="JSON Lines results; resumed if present")
    command.add_argument("--concurrency", type=int, help="cases at once (default: the slots)")
    command.add_argument("--repeats", type=int, default=1, help="attempts per case")
    command.add_argument("--tool-choice", help="auto, required, none (default: the profile's)")
    command.add_argument(
        "--parallel-tool-calls",
        action=argparse.BooleanOptionalAction,
        help="several calls in one generation, in every case (default: as each case says)",
    )
    # --seed among them: the first attempt's seed, attempt r gets seed + r.
    add_sampling_options(command)
    command.add_argument(
        "--category", nargs="+", default=[], help="only these categories (default: all)"
    )
    command.add_argument("--limit", type=int, help="at most this many cases per category")
    command.add_argument(
        "--price",
        nargs=2,
        type=float,
        metavar=("INPUT", "OUTPUT"),
        help="the model's price per million prompt and completion tokens",
    )
    command.add_argument("--markdown", metavar="FILE", help="write the report as Markdown")
    command.add_argument("--html", metavar="FILE", help="write the report as HTML")
    command.add_argument(
        "--min-accuracy",
        type=float,
        metavar="X",
        help="exit with status 1 if the accuracy is below X (0 to 1)",
    )
    progress = command.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", action="store_true", default=None, help="show progress on stderr"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    command.set_defaults(handler=_eval)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _eval(args: argparse.Namespace) -> int:
    if args.min_accuracy is not None and not 0 <= args.min_accuracy <= 1:
        raise UserError(f"--min-accuracy: between 0 and 1 (got {args.min_accuracy})")
    if args.datasets[0] == "compare":
        return _compare(args)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit: must be >= 1 (got {args.limit})")
    dataset = Dataset.load(*args.datasets, tools=args.tools)
    dataset = dataset.select(categories=args.category, limit=args.limit)
    if not len(dataset):
        raise UserError(f"no case to run (categories: {', '.join(args.category) or 'all'})")
    target: Runtime | Agent[Any]
    if args.agents:
        refuse_with_agents(args, _DEFINED_BY_AGENT)
        target = load_agent(args.agents)
        runtime = target.runtime
    else:
        target = runtime = build_runtime(args)
    fields = sampling(args)
    options: dict[str, Any] = {
        "output": args.output,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "seed": fields.pop("seed", None),
        "tool_choice": args.tool_choice,
        "parallel_tool_calls": args.parallel_tool_calls,
        "sampling": fields,
        "price": ModelPrice(*args.price) if args.price else None,
        "progress": args.progress,
    }

    sources = [] if args.agents else mcp_sources(args)

    async def go() -> Report:
        try:
            async with AsyncExitStack() as stack:
                # The servers' tools serve the cases that bring none, as --tools does.
                for source in sources:
                    await stack.enter_async_context(source)
                served = [t for source in sources for t in source.tools.values()]
                cases = dataset.with_tools(served) if served else dataset
                return await evaluate(target, cases, **options)
        finally:
            await runtime.aclose()

    try:
        report = anyio.run(go)
    except KeyboardInterrupt:
        if args.output:
            done = len(read_results(args.output)[1])
            _say(
                f"interrupted: {done} of {len(dataset) * args.repeats} attempts saved in "
                f"{args.output}; the same command continues from there"
            )
        raise
    print(report.summary())
    if args.markdown:
        Path(args.markdown).write_text(report.to_markdown())
    if args.html:
        Path(args.html).write_text(report.to_html())
    return _gate(report.accuracy, args.min_accuracy)


def _gate(accuracy: float, minimum: float | None) -> int:
    if minimum is None:
        return 0
    if accuracy < minimum:
        print(
            f"FAILED: accuracy {100 * accuracy:.1f}% is below --min-accuracy {100 * minimum:.1f}%"
        )
        return EXIT_BELOW
    print(f"ok: accuracy {100 * accuracy:.1f}% meets --min-accuracy {100 * minimum:.1f}%")
    return 0


def _compare(args: argparse.Namespace) -> int:
    files = args.datasets[1:]
    if len(files) != 2:
        raise UserError(f"agentkit eval compare: give two results files (got {len(files)})")
    a, b = (Report.from_file(f) for f in files)
    comparison = compare(a, b)
    print(f"A: {files[0]}\nB: {files[1]}")
    print(comparison.to_text())
    return _gate(b.accuracy, args.min_accuracy)
