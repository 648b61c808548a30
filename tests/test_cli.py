"""The `agentkit` command, run as a user runs it: a subprocess, on the embedded model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def agentkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentkit.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_main_job_answers_1517_having_called_the_calculator() -> None:
    done = agentkit("run", "What is 37 * 41?", "--tools", "tools/calculator.py", "-v")
    assert done.returncode == 0, done.stderr
    assert "1517" in done.stdout
    assert '-> calculate({"expression":"37 * 41"})' in done.stderr
    assert "<- calculate: 1517" in done.stderr


def test_json_prints_the_whole_run_result() -> None:
    done = agentkit("run", "What is 37 * 41?", "--tools", "tools/calculator.py", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "1517" in result["output"]
    assert [r["call"]["name"] for r in result["tool_calls"]] == ["calculate"]
    assert result["tool_calls"][0]["output"] == "1517"
    assert result["usage"]["prompt_tokens"] > 0
    assert result["steps"] == 2


def test_stream_prints_the_answer_as_it_comes() -> None:
    done = agentkit("run", "Say hello.", "--stream", "--max-tokens", "12", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_a_bad_sampling_value_is_one_clear_line_and_a_non_zero_exit() -> None:
    done = agentkit("run", "hi", "--temperature", "6")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: invalid request: temperature: must be <= 5 (got 6.0)"
    ]


def test_a_missing_model_file_is_one_clear_line() -> None:
    done = agentkit("run", "hi", "--model", "no/such/model.gguf")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: model_path: no such file: no/such/model.gguf"
    ]


def test_a_missing_tools_file_is_one_clear_line() -> None:
    done = agentkit("run", "hi", "--tools", "tools/nope.py")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "tools/nope.py" in line


def test_output_schema_prints_the_object_from_the_embedded_model() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
        "required": ["city", "celsius"],
    }
    prompt = "Oslo is cold today: -3 degrees."
    done = agentkit("run", prompt, "--output-schema", json.dumps(schema), "--max-tokens", "60")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert set(record) == {"city", "celsius"} and isinstance(record["celsius"], int)
    assert record["city"] == "Oslo"
