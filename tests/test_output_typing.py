"""`Agent(output_type=X)` types `RunResult.output` as X under mypy --strict, with no casts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = ROOT / "tests" / "typecheck" / "structured_output.py"


def mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_typed_usage_checks_clean(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from pydantic import BaseModel\n"
        "from agentkit import Agent, ScriptedRuntime\n\n"
        "class Person(BaseModel):\n"
        "    name: str\n\n"
        "result = Agent(ScriptedRuntime(), output_type=Person).run_sync('x')\n"
        "years: int = result.output.name\n"
        "result.output.nickname\n"
        "text: int = Agent(ScriptedRuntime()).run_sync('x').output\n"
    )
    done = mypy(SNIPPET, wrong)
    lines = done.stdout.splitlines()
    # The snippet is clean; each mistake in the other file is caught, on its line.
    assert not [line for line in lines if "structured_output.py" in line], done.stdout
    assert [line.split(": error: ")[0].rsplit(":", 1)[-1] for line in lines] == ["8", "9", "10"]
    assert 'Incompatible types in assignment (expression has type "str"' in lines[0]
    assert '"Person" has no attribute "nickname"' in lines[1]
