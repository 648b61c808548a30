"""Who may use `agentkit serve`: the Host allowlist (DNS rebinding), the Origin check and CORS
(other web pages), content types (requests a browser sends without asking), and tokens.

The page-level attack in a real browser is in test_server_playground.py."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from agentkit import ScriptedRuntime
from agentkit.cli import main as cli_main
from agentkit.server import create_app
from agentkit.server.background import BackgroundServer

from support.loopback import LoopbackServer
from support.server import QUESTION, TOKEN, Calculator, run_url

OWN = "http://127.0.0.1:8787"
EVIL = "http://evil.example:8787"


def envelope(answer: Any, status: int, code: int) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is False and body["result"] is None
    ((error),) = body["errors"]
    assert error["code"] == code
    message: str = error["message"]
    return message


# -- Host: DNS rebinding ------------------------------------------------------------------------


def test_a_foreign_host_is_refused_on_every_route(client: Callable[..., TestClient]) -> None:
    calculator = Calculator()
    app = client(calculator.runtime, tools=[calculator.tool])
    evil = {"Host": "evil.example:8787"}
    answers = [
        app.post("/playground/agent", json=QUESTION, headers=evil),
        app.get("/playground/info", headers=evil),
        app.post(run_url(), json={"prompt": "hi"}, headers=evil),
        app.get("/client/v4/accounts/a/ai/v1/models", headers=evil),
        app.get("/", headers=evil),
        app.get("/no/such/route", headers=evil),
    ]
    for answer in answers:
        message = envelope(answer, 403, 10000)
        assert message == (
            "Forbidden: this server does not answer to the host 'evil.example:8787' "
            "(start it with --allowed-host NAME to add one)"
        )
        assert answer.headers["cf-ai-req-id"]
    assert calculator.runs == []


@pytest.mark.parametrize("host", ["localhost:8787", "127.0.0.1:8787", "[::1]:8787", "LocalHost"])
def test_the_loopback_names_are_served(client: Callable[..., TestClient], host: str) -> None:
    answer = client(ScriptedRuntime(["hi"])).post(
        run_url(), json={"prompt": "hi"}, headers={"Host": host}
    )
    assert answer.status_code == 200, answer.text


def test_allowed_hosts_add_names(client: Callable[..., TestClient]) -> None:
    app = client(ScriptedRuntime(["a", "b"]), allowed_hosts=["box.lan"])
    assert app.post(run_url(), json={"prompt": "hi"}, headers={"Host": "box.lan:8787"}).is_success
    envelope(app.post(run_url(), json={"prompt": "hi"}, headers={"Host": "other.lan"}), 403, 10000)
    anyhost = client(ScriptedRuntime(["a"]), allowed_hosts=["*"], api_token=TOKEN)
    auth = {"Host": "x.example", "Authorization": f"Bearer {TOKEN}"}
    assert anyhost.post(run_url(), json={"prompt": "hi"}, headers=auth).is_success


# -- Origin: other web pages ------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin", [EVIL, "null", "http://localhost:3000", "https://127.0.0.1:8787"]
)
def test_a_foreign_origin_is_refused(client: Callable[..., TestClient], origin: str) -> None:
    calculator = Calculator()
    app = client(calculator.runtime, tools=[calculator.tool])
    answer = app.post("/playground/agent", json=QUESTION, headers={"Origin": origin})
    message = envelope(answer, 403, 10000)
    assert message == (
        f"Forbidden: requests from the origin '{origin}' are not allowed "
        "(start the server with --allow-origin ORIGIN to allow one)"
    )
    assert "access-control-allow-origin" not in answer.headers
    assert calculator.runs == []


def test_openai_clients_read_the_refusal(client: Callable[..., TestClient]) -> None:
    chat = "/client/v4/accounts/a/ai/v1/chat/completions"
    answer = client(ScriptedRuntime()).post(chat, json={}, headers={"Origin": EVIL})
    assert answer.status_code == 403
    assert answer.json()["error"]["message"].startswith("Forbidden: requests from the origin")


def test_a_cross_site_fetch_without_origin_is_refused(client: Callable[..., TestClient]) -> None:
    app = client(ScriptedRuntime(["hi"]))
    answer = app.post(run_url(), json={"prompt": "hi"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert "Sec-Fetch-Site: cross-site" in envelope(answer, 403, 10000)


def test_a_link_from_another_site_opens_the_playground(client: Callable[..., TestClient]) -> None:
    navigation = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    answer = client(ScriptedRuntime()).get("/", headers=navigation)
    assert answer.status_code == 200
    assert "<title>agentkit playground</title>" in answer.text


def test_the_servers_own_origin_is_served(client: Callable[..., TestClient]) -> None:
    calculator = Calculator()
    app = client(calculator.runtime, tools=[calculator.tool])
    headers = {"Origin": OWN, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    answer = app.post("/playground/agent", json=QUESTION, headers=headers)
    assert answer.status_code == 200
    assert "event: run_finished" in answer.text
    assert calculator.runs == ["37 * 41"]
    assert "access-control-allow-origin" not in answer.headers


def test_an_allowed_origin_gets_cors(client: Callable[..., TestClient]) -> None:
    site = "https://notebook.example"
    app = client(ScriptedRuntime(["hi"]), allowed_origins=[site])
    preflight = app.options(
        run_url(),
        headers={
            "Origin": site,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == site
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    answer = app.post(run_url(), json={"prompt": "hi"}, headers={"Origin": site})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == site
    assert "cf-ai-req-id" in answer.headers["access-control-expose-headers"]
    # Others still get nothing, preflight included.
    refused = app.options(
        run_url(), headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    )
    envelope(refused, 403, 10000)


def test_a_malformed_allowed_origin_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="allowed origin: must be scheme://host"):
        create_app(ScriptedRuntime(), allowed_origins=["notebook.example/path"])


# -- content types: what browsers send without a preflight --------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/playground/agent", {"Content-Type": "text/plain"}),
        ("/playground/agent", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("/playground/agent", {}),
        (run_url(), {"Content-Type": "text/plain", "Origin": OWN}),
        (run_url(), {"Content-Type": "multipart/form-data; boundary=x", "Sec-Fetch-Mode": "cors"}),
    ],
)
def test_bodies_from_browsers_and_to_the_playground_must_be_json(
    client: Callable[..., TestClient], path: str, headers: dict[str, str]
) -> None:
    calculator = Calculator()
    app = client(calculator.runtime, tools=[calculator.tool])
    answer = app.post(path, content=json.dumps(QUESTION | {"prompt": None}), headers=headers)
    message = envelope(answer, 415, 5006)
    assert message.startswith("Bad input: Content-Type must be application/json (got ")
    assert calculator.runs == [] and calculator.runtime.requests == []


def test_api_clients_keep_any_content_type(client: Callable[..., TestClient]) -> None:
    # Workers AI's own examples: curl -d '{...}', which says form-urlencoded.
    app = client(ScriptedRuntime(["hi"]), api_token=TOKEN)
    answer = app.post(
        run_url(),
        content=b'{"prompt": "hi"}',
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert answer.status_code == 200
    assert answer.json()["result"]["response"] == "hi"


@pytest.mark.subprocess
def test_the_reported_attack_no_longer_runs_the_tool_and_curl_still_works(
    serve: Callable[..., BackgroundServer],
) -> None:
    calculator = Calculator()
    server = serve(calculator.runtime, tools=[calculator.tool])
    port = server.port
    attack = subprocess.run(
        [
            "curl", "--silent", "-H", "Content-Type: text/plain",
            "-H", f"Origin: http://evil.example:{port}", "-H", f"Host: evil.example:{port}",
            "-d", json.dumps(QUESTION), f"http://127.0.0.1:{port}/playground/agent",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(attack.stdout)["errors"][0]["code"] == 10000
    assert "1517" not in attack.stdout
    # Without the Host, the Origin stops it; without both, the content type.
    for headers in (["-H", f"Origin: http://evil.example:{port}"], []):
        refused = subprocess.run(
            ["curl", "--silent", "-H", "Content-Type: text/plain", *headers,
             "-d", json.dumps(QUESTION), f"http://127.0.0.1:{port}/playground/agent"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert json.loads(refused.stdout)["errors"][0]["code"] in (10000, 5006)
    assert calculator.runs == []
    # Cloudflare's documented curl (form content type, no Origin) is answered.
    answer = subprocess.run(
        ["curl", "--silent", "-d", '{"messages": [{"role": "user", "content": "37 * 41?"}]}',
         server.url + run_url()],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(answer.stdout)["result"]["tool_calls"] == [
        {"name": "calculate", "arguments": {"expression": "37 * 41"}}
    ]


# -- tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["tökén-123", "токен", "two words", "tab\there"])
def test_a_token_clients_cannot_send_is_refused_at_startup(
    token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="api_token: must be printable ASCII") as refused:
        create_app(ScriptedRuntime(), api_token=token)
    assert token not in str(refused.value)
    assert cli_main(["serve", "--api-token", token]) == 2
    err = capsys.readouterr().err
    assert "--api-token: must be printable ASCII without spaces" in err
    assert token not in err


def test_a_token_is_compared_as_bytes(client: Callable[..., TestClient]) -> None:
    app = client(ScriptedRuntime(["in"]), api_token=TOKEN)
    # The same characters in another encoding are another token.
    wrong = app.post(
        run_url(), json={"prompt": "hi"}, headers={b"Authorization": b"Bearer test-t\xf6ken-123"}
    )
    assert envelope(wrong, 401, 10000) == "Authentication error: the token is not valid"
    right = app.post(run_url(), json={"prompt": "hi"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200


# -- wildcards: `agentkit serve` refuses them without a token -------------------------------

ROOT = Path(__file__).resolve().parents[1]
WILDCARDS = {
    "origin": (["--allow-origin", "*"], "--insecure-allow-any-origin"),
    "host": (["--allowed-host", "*"], "--insecure-allow-any-host"),
}


def serve_command(*args: str, port: int = 0) -> list[str]:
    """`agentkit serve` with the calculator on a Workers AI service (`service`'s loopback)."""
    tools = ["--tools", str(ROOT / "tools" / "calculator.py")]
    return [sys.executable, "-m", "agentkit.cli", "serve", "--runtime", "workers-ai", *tools,
            "--port", str(port), *args]  # fmt: skip


@pytest.fixture
def served(
    tmp_path: Path, service: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[str, Path]]]:
    """`served(*args)`: a real `agentkit serve` process, its URL and its output's file."""
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-token")
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", service.url + "/client/v4")
    monkeypatch.delenv("AGENTKIT_API_TOKEN", raising=False)
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[str, Path]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        output = tmp_path / f"serve-{port}.log"
        with output.open("wb") as log:
            process = subprocess.Popen(
                serve_command(*args, port=port), cwd=tmp_path, stdout=log, stderr=log
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, output.read_text()
            try:
                httpx.get(url + "/")
                return url, output
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "agentkit serve did not start"
                time.sleep(0.2)

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0


def test_create_app_refuses_a_wildcard_without_a_token_and_warns_with_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for setting, kind in (("allowed_origins", "origin"), ("allowed_hosts", "host")):
        wildcard: dict[str, Any] = {setting: ["*"]}
        with pytest.raises(ValueError, match=rf"{setting}: '\*' without api_token: ") as refused:
            create_app(ScriptedRuntime(), **wildcard)
        assert f"or pass insecure_allow_any_{kind}=True to accept the risk" in str(refused.value)
        insecure: dict[str, Any] = {f"insecure_allow_any_{kind}": True}
        create_app(ScriptedRuntime(), **wildcard, **insecure)
        create_app(ScriptedRuntime(), api_token=TOKEN, **wildcard)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(":")[0] for w in warnings] == [
        "any origin is allowed ('*')", "any origin is allowed ('*')",
        "any Host is answered ('*')", "any Host is answered ('*')",
    ]  # fmt: skip
    assert [w.rpartition("; ")[2] for w in warnings] == [
        "no API token stands in the way", "only the API token stands in the way"
    ] * 2  # fmt: skip


@pytest.mark.subprocess
@pytest.mark.parametrize("kind", sorted(WILDCARDS))
def test_a_wildcard_without_a_token_refuses_to_start(
    served: Callable[..., tuple[str, Path]], kind: str
) -> None:
    wildcard, insecure = WILDCARDS[kind]
    try:
        done = subprocess.run(serve_command(*wildcard), capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"agentkit serve {' '.join(wildcard)} started without a token")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    flag = wildcard[0]
    assert line.startswith(f"error: {flag} '*' without --api-token: ")
    assert "run the tools" in line
    assert f"set --api-token, name the {kind}s to trust instead of '*', or pass {insecure}" in line


@pytest.mark.subprocess
def test_the_insecure_flags_start_a_server_that_answers_any_page_and_host(
    served: Callable[..., tuple[str, Path]],
) -> None:
    url, output = served(
        *WILDCARDS["origin"][0], WILDCARDS["origin"][1], *WILDCARDS["host"][0],
        WILDCARDS["host"][1],
    )  # fmt: skip
    question = {"messages": [{"role": "user", "content": "What is 2 + 3?"}]}
    rebound = httpx.post(url + "/playground/agent", json=question, headers={"Host": "evil.example"})
    assert rebound.status_code == 200
    assert '"output":"The result is 5."' in rebound.text
    preflight = httpx.options(
        url + "/playground/agent",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://evil.example"
    log = output.read_text()
    assert "WARNING: any origin is allowed ('*'): every web page" in log
    assert "WARNING: any Host is answered ('*'): any web page" in log
    assert log.count("no API token stands in the way") == 2


@pytest.mark.subprocess
def test_a_wildcard_with_a_token_starts_and_warns(
    served: Callable[..., tuple[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTKIT_API_TOKEN", TOKEN)
    url, output = served(*WILDCARDS["origin"][0], *WILDCARDS["host"][0])
    question = {"messages": [{"role": "user", "content": "What is 2 + 3?"}]}
    evil = {"Host": "evil.example", "Origin": "https://evil.example"}
    refused = httpx.post(url + "/playground/agent", json=question, headers=evil)
    assert envelope(refused, 401, 10000).startswith("Authentication error")
    evil["Authorization"] = f"Bearer {TOKEN}"
    assert httpx.post(url + "/playground/agent", json=question, headers=evil).status_code == 200
    log = output.read_text()
    assert "WARNING: any origin is allowed ('*')" in log
    assert "WARNING: any Host is answered ('*')" in log
    assert log.count("only the API token stands in the way") == 2
    assert TOKEN not in log


# -- JSON inside strings: a call's arguments ------------------------------------------------

DEEP = "[" * 5000 + "]" * 5000
CALL_SHAPES: dict[str, dict[str, Any]] = {
    "legacy": {"name": "calculate", "arguments": DEEP},
    "function": {
        "id": "c1",
        "type": "function",
        "function": {"name": "calculate", "arguments": DEEP},
    },
}


def with_deep_arguments(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": "What is 37 * 41?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "1517"},
            {"role": "user", "content": "And again?"},
        ]
    }


@pytest.mark.parametrize("shape", sorted(CALL_SHAPES))
@pytest.mark.parametrize(
    ("path", "extra"),
    [
        (run_url(), {}),
        (run_url(), {"stream": True}),
        ("/client/v4/accounts/a/ai/v1/chat/completions", {"model": "@agentkit/function"}),
        (
            "/client/v4/accounts/a/ai/v1/chat/completions",
            {"model": "@agentkit/function", "stream": True},
        ),
        ("/playground/agent", {}),
    ],
)
def test_arguments_nested_past_the_limit_are_400_naming_the_field(
    serve: Callable[..., BackgroundServer],
    caplog: pytest.LogCaptureFixture,
    shape: str,
    path: str,
    extra: dict[str, Any],
) -> None:
    calculator = Calculator()
    server = serve(calculator.runtime, tools=[calculator.tool])
    body = with_deep_arguments(CALL_SHAPES[shape]) | extra
    answer = httpx.post(server.url + path, json=body, timeout=30)
    message = envelope(answer, 400, 5006)
    assert message.startswith(
        "Bad input: messages[1].tool_calls[0].arguments: nests deeper than 64 levels (got "
    )
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert calculator.runs == [] and calculator.runtime.requests == []
    # Nesting within the limit is a call like any other.
    shallow = json.dumps({"expression": [[["37 * 41"]]]})
    call = json.loads(json.dumps(CALL_SHAPES[shape]).replace(json.dumps(DEEP), json.dumps(shallow)))
    fine = httpx.post(server.url + path, json=with_deep_arguments(call) | extra, timeout=30)
    assert fine.status_code == 200, fine.text
