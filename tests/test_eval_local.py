"""BFCL on the embedded model through `evaluate`: the cases share the runtime's slots, and under
the grammar every call validates against its tool.

Whether the model picks the right arguments is the model's business (a 135M model often does
not): that is the evaluation itself, `python -m benchmarks W9` or `agentkit eval`. That each
call it makes is well-formed and valid against its tool is ours, checked here on a sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from agentkit.eval import Dataset, Report, evaluate_sync
from agentkit.runtimes.llama_cpp import LlamaCpp

from support.environment import BFCL_DATA, require_bfcl

SAMPLE = ["simple_python_0", "simple_python_32", "simple_python_64", "simple_python_80"]
"""Strings and integers; floats; an enum; an array among four parameters."""


@pytest.fixture(scope="module")
def runtime(model_path: Path) -> Iterator[LlamaCpp]:
    local = LlamaCpp(model_path)
    yield local
    anyio.run(local.aclose)


@pytest.fixture(scope="module")
def report(runtime: LlamaCpp, tmp_path_factory: pytest.TempPathFactory) -> Report:
    require_bfcl()
    every = Dataset.load(BFCL_DATA / "BFCL_v4_simple_python.json")
    sample = Dataset([case for case in every if case.id in SAMPLE])
    output = tmp_path_factory.mktemp("eval") / "out.jsonl"
    return evaluate_sync(runtime, sample, output=output, progress=False)


def test_the_cases_share_the_slots_and_each_gets_a_verdict(
    runtime: LlamaCpp, report: Report
) -> None:
    assert runtime.slots > 1
    assert report.concurrency == runtime.slots
    assert [r.id for r in report.results] == SAMPLE
    assert all(r.kind != "error" for r in report.results), report.summary()
    assert all(r.completion_tokens > 0 for r in report.results)


def test_every_call_made_validates_against_its_tool(report: Report) -> None:
    require_bfcl()
    tools = {c.id: c.tools for c in Dataset.load(BFCL_DATA / "BFCL_v4_simple_python.json")}
    invalid = []
    for result in report.results:
        if not result.calls:
            invalid.append(f"{result.id}: no call in {result.answer[:200]!r}")
        for call in result.calls:
            (tool,) = tools[result.id]
            try:
                tool.validate(call["arguments"])
            except Exception as exc:
                invalid.append(f"{result.id}: {exc}")
    assert invalid == []
