"""`--openapi` on the command line: a service's operations as the agent's tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentkit.cli import main

from support.loopback import LoopbackServer
from support.openapi_service import API_KEY

ROOT = Path(__file__).resolve().parents[1]
SPECS = Path(__file__).parent / "support" / "openapi"


def test_run_calls_a_service_with_the_api_key_from_the_environment(
    workers_ai: LoopbackServer,
    openapi_service: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AGENTKIT_OPENAPI_API_KEY", API_KEY)
    spec = f"{openapi_service.url}/openapi.json"
    argv = ["run", "How many lamps?", "--runtime", "workers-ai", "--openapi", spec]
    argv += ["--openapi-allow-private", "--openapi-operation", "stock"]
    assert main(argv) == 0
    assert capsys.readouterr().out == 'The result is {"lamps":4}.\n'
    offered = workers_ai.requests[0].json["tools"]
    assert [t["name"] for t in offered] == ["stock"]
    assert API_KEY not in json.dumps([r.json for r in workers_ai.requests])


def test_a_loopback_service_is_refused_without_the_flag(
    workers_ai: LoopbackServer, openapi_service: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = f"{openapi_service.url}/openapi.json"
    assert main(["run", "hi", "--runtime", "workers-ai", "--openapi", spec]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: refused to call {spec}: 127.0.0.1 is a loopback address; private addresses are "
        "refused unless allowed (allow_private=True, --openapi-allow-private)"
    )
    assert workers_ai.requests == []


def test_openapi_options_are_one_clear_line_when_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"swagger": "2.0"}')
    assert main(["run", "hi", "--openapi", str(notes)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --openapi: OpenAPI document {notes}: Swagger 2.0 is not supported; "
        "convert it to OpenAPI 3"
    )
    petstore = str(SPECS / "petstore.yaml")
    two = ["--openapi", petstore, "--openapi", petstore, "--openapi-base-url", "http://x.test"]
    assert main(["run", "hi", *two]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --openapi-base-url: says where one service is, and 2 --openapi documents are given"
    )
    agents = tmp_path / "agents.py"
    agents.write_text("")
    assert main(["run", "hi", "--agents", str(agents), "--openapi", petstore]) == 2
    assert "--agents: --openapi cannot be given with it" in capsys.readouterr().err


@pytest.mark.subprocess
def test_the_embedded_model_calls_a_service_through_agentkit_run(
    model_path: Path, openapi_service: LoopbackServer
) -> None:
    # One operation offered: the embedded model's forced first call goes to it.
    done = subprocess.run(
        [
            sys.executable, "-m", "agentkit.cli", "run", "Show me item 1.",
            "--openapi", f"{openapi_service.url}/openapi.json",
            "--openapi-operation", "get_item", "--openapi-allow-private",
            "--max-steps", "3", "--json",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    first = result["tool_calls"][0]
    assert first["call"]["name"] == "get_item"
    assert first["call"]["arguments"]["item_id"] == 1
    # The service's answer is what the model was given.
    assert json.loads(first["output"]) == {"id": 1, "name": "lamp", "price": 12.5, "tags": ["home"]}
