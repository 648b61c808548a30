"""Docs and examples run: every Python block of README.md and docs/*.md, every example script."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.forked import run_program

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
EMBEDDED = re.compile(r"\"local\"|LlamaCpp\(")
DURABLE = re.compile(r"from agentkit\.temporal import")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks() -> list[Any]:
    """Each Python block, by page and number; one that runs the embedded model, or a durable
    run on Temporal, is marked so."""
    found = []
    for page in PAGES:
        for n, match in enumerate(BLOCK.finditer(page.read_text()), 1):
            code = match.group(1)
            marks = [pytest.mark.model] if EMBEDDED.search(code) else []
            if DURABLE.search(code):  # it starts a Temporal dev server of its own
                marks.append(pytest.mark.temporal)
            where = f"{page.relative_to(ROOT)}#{n}"
            found.append(pytest.param(where, code, id=where, marks=marks))
    return found


@pytest.mark.subprocess
@pytest.mark.parametrize(("where", "code"), blocks())
def test_doc_block_runs(where: str, code: str) -> None:
    # Each block is a complete program: run it as one, in a process of its own.
    status, output = run_program(code, ROOT, timeout=300)
    assert status == 0, f"{where} failed:\n{output[-3000:]}"


@pytest.mark.subprocess
def test_scripted_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, "examples/scripted_agent.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ['-> add({"a":2,"b":3})', '-> weather({"city":"Paris"})']
    # The two calls run concurrently: they may finish in either order.
    assert sorted(lines[2:4]) == ["<- 5", '<- {"city": "Paris", "sky": "clear", "celsius": 21}']
    assert lines[4:] == ["2 + 3 = 5, and Paris is clear at 21 °C.", "2 steps, 2 tool calls"]


@pytest.mark.model
@pytest.mark.subprocess
def test_local_assistant_example_runs_on_the_embedded_model() -> None:
    done = subprocess.run(
        [sys.executable, "examples/local_assistant.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert '  calculate({"expression":"37 * 41"}) -> 1517' in done.stdout.splitlines()
    assert "assistant> 1517" in done.stdout


@pytest.mark.model
@pytest.mark.subprocess
def test_triage_example_hands_off_to_math_on_the_embedded_model() -> None:
    done = subprocess.run(
        [sys.executable, "examples/triage.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "you> What is 37 * 41?",
        "triage -> math",
        '  math: calculate({"expression":"37 * 41"}) -> 1517',
        "math> 1517",
    ]


@pytest.mark.model
@pytest.mark.subprocess
def test_extract_record_example_runs_on_the_embedded_model() -> None:
    done = subprocess.run(
        [sys.executable, "examples/extract_record.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("text> Maria Lopez ordered 3 boxes")
    # The record is a valid Order (bounds included), and the model read the text right.
    example = runpy.run_path(str(ROOT / "examples" / "extract_record.py"))
    (record,) = [line.removeprefix("json: ") for line in lines if line.startswith("json: ")]
    order = example["Order"].model_validate_json(record)
    assert (order.customer, order.quantity, order.city) == ("Maria Lopez", 3, "Lisbon")
    assert "customer: Maria Lopez" in lines
