"""The runner: every case of a dataset through a runtime (one generation each) or an Agent (a
whole run each), concurrently, each result appended to the output as it finishes."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import IO, Any

import anyio

from agentkit.agent import Agent
from agentkit.errors import AgentKitError, UserError
from agentkit.eval.answer import check_answer
from agentkit.eval.check import MadeCall, Verdict, check_calls
from agentkit.eval.dataset import Case, Dataset
from agentkit.eval.report import Report
from agentkit.eval.results import CaseResult, ResultsFile, Settings
from agentkit.model_api import SAMPLING_FIELDS, ModelRequest, Usage
from agentkit.runtimes.base import Runtime
from agentkit.tools import Tool
from agentkit.usage import ModelPrice, model_name

__all__ = ["evaluate", "evaluate_sync"]

DEFAULT_MAX_TOKENS = 1024
"""Room for what a call grammar allows: long strings, arrays of many small objects."""


async def evaluate(
    target: Runtime | Agent[Any],
    dataset: Dataset,
    *,
    output: str | Path | None = None,
    concurrency: int | None = None,
    repeats: int = 1,
    seed: int | None = None,
    tool_choice: str | None = None,
    parallel_tool_calls: bool | None = None,
    sampling: Mapping[str, Any] | None = None,
    price: ModelPrice | None = None,
    progress: bool | IO[str] | None = None,
) -> Report:
    """Run every case and check it.

    Args:
        target: a Runtime (one generation per case, offering the case's tools: how well the
            model calls them) or an Agent (a whole run per case, its own tools running).
        dataset: the cases.
        output: a JSON Lines file the results are appended to as they finish; a rerun with
            the same file and settings skips the cases already done.
        concurrency: cases at once; by default the runtime's `slots`.
        repeats: attempts per case (for sampled runs).
        seed: the first attempt's seed; attempt `r` gets `seed + r` (generations only).
        tool_choice: each generation's tool choice; by default the runtime profile's (for an
            Agent, `tool_choice`, `parallel_tool_calls`, `sampling` and `seed` are the
            Agent's own: refused here).
        parallel_tool_calls: whether one generation may make several calls, in every case;
            by default as each case says (BFCL's parallel categories: yes), else the
            runtime's default (one call a generation on the local runtime).
        sampling: sampling fields for each generation (`temperature`, `max_tokens`, ...),
            over the runtime profile's; `max_tokens` defaults to 1024.
        price: the model's price, to give each case its cost.
        progress: a progress line: True for stderr, a stream, or None for stderr on a TTY.

    Raises:
        UserError: a setting is out of bounds, or `output` holds another evaluation.
    """
    runtime = target.runtime if isinstance(target, Agent) else target
    if repeats < 1:
        raise UserError(f"repeats: must be >= 1 (got {repeats})")
    limit = concurrency if concurrency is not None else max(1, runtime.slots)
    if limit < 1:
        raise UserError(f"concurrency: must be >= 1 (got {limit})")
    unknown = set(sampling or {}) - set(SAMPLING_FIELDS)
    if unknown:
        raise UserError(f"sampling: unknown field {sorted(unknown)[0]!r}")
    agent = isinstance(target, Agent)
    if agent:
        given = [n for n, v in (("sampling", sampling), ("tool_choice", tool_choice)) if v]
        given += [
            n
            for n, v in (("parallel_tool_calls", parallel_tool_calls), ("seed", seed))
            if v is not None
        ]
        if given:
            raise UserError(
                f"{given[0]}: an Agent's runs use the Agent's own settings; set it on the Agent"
            )
        merged: dict[str, Any] = {}
    else:
        merged = {"max_tokens": DEFAULT_MAX_TOKENS, **runtime.profile.sampling, **(sampling or {})}
        merged.pop("seed", None)
    settings = Settings(
        runtime=runtime.name,
        model=model_name(runtime),
        mode="agent" if agent else "generation",
        tool_choice=tool_choice,
        sampling=merged,
        repeats=repeats,
        seed=seed,
        parallel_tool_calls=parallel_tool_calls,
    )
    store = ResultsFile(output, settings) if output is not None else None
    attempts = [(case, r) for case in dataset for r in range(repeats)]
    done: dict[str, CaseResult] = {}
    if store is not None:
        for case, r in attempts:
            old = store.done.get(f"{case.id}#{r}")
            if old is not None and old.case_hash == case.fingerprint() and old.kind != "error":
                done[old.key] = old
    todo = [(case, r) for case, r in attempts if f"{case.id}#{r}" not in done]
    bar = _Progress(len(attempts), len(done), progress)
    limiter = anyio.CapacityLimiter(limit)
    fresh: list[CaseResult] = []
    started = time.perf_counter()

    async def attempt(case: Case, repeat: int) -> None:
        async with limiter:
            result = await _attempt(target, case, repeat, settings, price)
        fresh.append(result)
        if store is not None:
            store.append(result)
        bar.add(result.passed)

    try:
        async with anyio.create_task_group() as group:
            for case, repeat in todo:
                group.start_soon(attempt, case, repeat)
    finally:
        bar.close()
        if store is not None:
            store.close()
    wall = time.perf_counter() - started
    every = {**done, **{r.key: r for r in fresh}}
    ordered = [every[f"{case.id}#{r}"] for case, r in attempts]
    return Report(settings, ordered, wall_seconds=wall, ran=len(fresh), concurrency=limit)


def evaluate_sync(target: Runtime | Agent[Any], dataset: Dataset, **options: Any) -> Report:
    """`evaluate` for code that has no event loop; the same arguments."""
    return anyio.run(partial(evaluate, target, dataset, **options))


async def _attempt(
    target: Runtime | Agent[Any],
    case: Case,
    repeat: int,
    settings: Settings,
    price: ModelPrice | None,
) -> CaseResult:
    seed = None if settings.seed is None else settings.seed + repeat
    started = time.perf_counter()
    tools: list[Tool] = list(case.tools)
    try:
        if isinstance(target, Agent):
            made, answer, usage = await _agent_run(target, case, seed)
            tools += list(target.toolset)
        else:
            made, answer, usage = await _generate(target, case, settings, seed)
    except (AgentKitError, OSError) as exc:
        verdict = Verdict(False, "error", f"{type(exc).__name__}: {exc}")
        made, answer, usage = [], "", Usage()
    else:
        verdict = _verdict(case, made, answer, tools)
    return CaseResult(
        id=case.id,
        category=case.category,
        repeat=repeat,
        passed=verdict.passed,
        kind=verdict.kind,
        reason=verdict.reason,
        calls=[c.to_json() for c in made],
        answer=answer,
        seconds=round(time.perf_counter() - started, 4),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost=None if price is None else price.of(usage),
        case_hash=case.fingerprint(),
    )


def _verdict(case: Case, made: list[MadeCall], answer: str, tools: list[Tool]) -> Verdict:
    expected = case.expected
    verdict = check_calls(made, expected, tools)
    if verdict.passed and expected.answer is not None:
        return check_answer(answer, expected.answer)
    return verdict


async def _generate(
    runtime: Runtime, case: Case, settings: Settings, seed: int | None
) -> tuple[list[MadeCall], str, Usage]:
    dialect = runtime.capabilities.schema_dialect
    fields: dict[str, Any] = dict(settings.sampling)
    if seed is not None:
        fields["seed"] = seed
    if case.tools:
        fields["tools"] = [t.definition(dialect) for t in case.tools]
        fields["tool_choice"] = settings.tool_choice or runtime.profile.tool_choice
        parallel = settings.parallel_tool_calls
        if parallel is None:
            parallel = case.parallel_tool_calls
        if parallel is not None and runtime.capabilities.parallel_tool_calls:
            fields["parallel_tool_calls"] = parallel
    request = ModelRequest(messages=list(case.messages), **fields)
    generation = await runtime.generate(request)
    made = [MadeCall(c.name, c.arguments) for c in generation.tool_calls]
    return made, generation.response, generation.usage


async def _agent_run(
    agent: Agent[Any], case: Case, seed: int | None
) -> tuple[list[MadeCall], str, Usage]:
    del seed  # refused for an Agent by `evaluate`: its sampling is its own
    result = await agent.run(list(case.messages))
    made = [MadeCall(r.call.name, r.call.arguments) for r in result.tool_calls]
    output = result.output if isinstance(result.output, str) else str(result.output)
    return made, output, result.usage


class _Progress:
    """`[#####.....] 12/40 pass 75%` redrawn on one line of a stream (stderr on a TTY)."""

    WIDTH = 30

    def __init__(self, total: int, done: int, where: bool | IO[str] | None) -> None:
        if where is None:
            where = sys.stderr.isatty()
        self.stream: IO[str] | None = sys.stderr if where is True else where or None
        self.total, self.count, self.passed = total, done, 0
        self.ran = 0
        self._draw()

    def add(self, passed: bool) -> None:
        self.count += 1
        self.ran += 1
        self.passed += passed
        self._draw()

    def _draw(self) -> None:
        if self.stream is None or not self.total:
            return
        filled = self.WIDTH * self.count // self.total
        rate = f" pass {100 * self.passed / self.ran:.0f}%" if self.ran else ""
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {self.count}/{self.total}{rate}")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.total:
            self.stream.write("\n")
            self.stream.flush()
