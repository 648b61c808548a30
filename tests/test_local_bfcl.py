"""BFCL simple_python on the embedded model: under the grammar, every call validates.

Whether the model picks the right arguments is the model's business (a 135M model often does
not): that is an evaluation, `python -m benchmarks W9`, which asks every question and checks
every call. That each call it makes is well-formed and valid against its tool is ours, checked
here on a sample of foreign definitions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from agentkit import Tool
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.wire import GenerationRequest

from support.environment import BFCL_DATA, require_bfcl

SAMPLE = ["simple_python_0", "simple_python_32", "simple_python_64", "simple_python_80"]
"""Strings and integers; floats; an enum; an array among four parameters."""


@pytest.fixture(autouse=True)
def _data() -> None:
    require_bfcl()


@pytest.fixture(scope="module")
def runtime(model_path: Path) -> Iterator[LlamaCpp]:
    local = LlamaCpp(model_path)
    yield local
    anyio.run(local.aclose)


def test_every_call_under_the_grammar_validates(runtime: LlamaCpp) -> None:
    lines = (BFCL_DATA / "BFCL_v4_simple_python.json").read_text().splitlines()
    entries = [entry for entry in map(json.loads, lines) if entry["id"] in SAMPLE]
    assert [entry["id"] for entry in entries] == SAMPLE

    async def run_all() -> list[str]:
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
            if not generation.tool_calls:
                invalid.append(f"{entry['id']}: no call in {generation.response[:200]!r}")
            for call in generation.tool_calls:
                try:
                    made.validate(call.arguments)
                except Exception as exc:
                    invalid.append(f"{entry['id']}: {exc}")
        return invalid

    assert anyio.run(run_all) == []
