"""W9: BFCL simple_python on the embedded model: valid calls under the grammar, and accuracy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import Budget, Check, Row, Unavailable

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AGENTKIT_BFCL_DATA", ROOT.parent / "shared" / "data" / "bfcl"))
FILE = "BFCL_v4_simple_python.json"


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def matches(arguments: dict[str, Any], truth: dict[str, list[Any]]) -> bool:
    """BFCL's rule for one call: every given argument is among its acceptable values, every
    omitted one may be omitted ("" is acceptable), and nothing else is given."""
    if set(arguments) - set(truth):
        return False
    for name, acceptable in truth.items():
        if name not in arguments:
            if "" not in acceptable:
                return False
        elif arguments[name] not in acceptable:
            return False
    return True


def run(budget: Budget) -> list[Row]:
    try:
        from agentkit.runtimes.llama_cpp import LlamaCpp
    except ImportError as exc:
        raise Unavailable(f"needs the local extra ({exc.name})") from None
    if not (DATA / FILE).is_file():
        raise Unavailable(f"no BFCL data at {DATA} (set AGENTKIT_BFCL_DATA)")
    entries = read(DATA / FILE)[: budget.n(100, 5)]
    answers = {a["id"]: a["ground_truth"] for a in read(DATA / "possible_answer" / FILE)}
    local = LlamaCpp()
    try:
        calls, valid, right, missing = anyio.run(_ask, local, entries, answers)
    finally:
        anyio.run(local.aclose)
    n = len(entries)
    return [
        Row(
            workload="W9",
            case=f"BFCL simple_python, first {n}, tool_choice required, greedy",
            unit="% right",
            agentkit=100 * right / n,
            notes=[
                f"{calls} calls, {valid} valid against their tool, {missing} answers without a call"
            ],
            checks=[
                Check("every call valid", valid == calls, f"{valid}/{calls}"),
                Check("a call for every question", missing == 0, f"{n - missing}/{n}"),
            ],
            lower_is_better=False,
        )
    ]


async def _ask(
    local: Any, entries: list[dict[str, Any]], answers: dict[str, Any]
) -> tuple[int, int, int, int]:
    from agentkit import Tool
    from agentkit.wire import GenerationRequest

    calls = valid = right = missing = 0
    for entry in entries:
        (definition,) = entry["function"]
        made = Tool.from_definition(definition)
        request = GenerationRequest.build(
            messages=entry["question"][0],
            tools=[made.definition("inline")],
            tool_choice="required",
            temperature=0,
            # Room for what the call grammar allows: strings of 256 characters, arrays of 32
            # items (simple_python_96 fills 32 small objects: 673 tokens).
            max_tokens=1024,
        )
        generation = await local.generate(request)
        missing += not generation.tool_calls
        for call in generation.tool_calls:
            calls += 1
            try:
                made.validate(call.arguments)
            except Exception:
                continue
            valid += 1
            (truth,) = answers[entry["id"]]
            expected = truth.get(made.original_name)
            right += expected is not None and matches(call.arguments, expected)
    return calls, valid, right, missing
