"""BFCL simple_python on the embedded model: under the grammar, every call validates.

Whether the model picks the right arguments is the model's business (a 135M model often does
not); that each call it makes is well-formed and valid against its tool is ours. The figures
are printed (`pytest -s`) for the record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from environment import BFCL_DATA, require_bfcl

from agentkit import GenerationRequest, Tool
from agentkit.runtimes.llama_cpp import LlamaCpp

DATA = BFCL_DATA
CASES = 100


@pytest.fixture(autouse=True)
def _data() -> None:
    require_bfcl()


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


@pytest.fixture(scope="module")
def runtime(model_path: Path) -> Iterator[LlamaCpp]:
    local = LlamaCpp(model_path)
    yield local
    anyio.run(local.aclose)


def test_every_call_under_the_grammar_validates(runtime: LlamaCpp) -> None:
    entries = read(DATA / "BFCL_v4_simple_python.json")[:CASES]
    answers = {
        a["id"]: a["ground_truth"]
        for a in read(DATA / "possible_answer" / "BFCL_v4_simple_python.json")
    }

    async def run_all() -> tuple[int, int, int, list[str]]:
        calls = valid = right = 0
        invalid: list[str] = []
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
            generation = await runtime.generate(request)
            for call in generation.tool_calls:
                calls += 1
                try:
                    made.validate(call.arguments)
                except Exception as exc:
                    invalid.append(f"{entry['id']}: {exc}")
                    continue
                valid += 1
                (truth,) = answers[entry["id"]]
                expected = truth.get(made.original_name)
                right += expected is not None and matches(call.arguments, expected)
            if not generation.tool_calls:
                invalid.append(f"{entry['id']}: no call in {generation.response[:200]!r}")
        return calls, valid, right, invalid

    calls, valid, right, invalid = anyio.run(run_all)
    print(
        f"\nBFCL simple_python, first {len(entries)}: {calls} calls, {valid} valid "
        f"({valid / max(calls, 1):.0%}), {right} match the ground truth "
        f"({right / len(entries):.0%})"
    )
    assert invalid == []
    assert calls == valid == len(entries)
