"""`a2a_app` and `create_app(a2a=...)` under uvicorn on loopback: typed answers as data, and
the server's checks on the A2A routes (token, Host, Origin, JSON bodies, size)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2AClientError
from a2a.types import GetTaskRequest, ListTasksRequest, Part, TaskState
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel

from agentkit import Agent, ScriptedRuntime
from agentkit.cli import main as cli_main
from agentkit.errors import UserError
from agentkit.protocols.a2a import SessionTaskStore
from agentkit.server import create_app
from agentkit.server.a2a import a2a_app
from agentkit.server.background import BackgroundServer

from support.a2a import sdk_client, user_message
from support.helpers import add
from support.server import TOKEN

RPC = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "nope"}}


class Order(BaseModel):
    customer: str
    quantity: int


def echo() -> Agent[str]:
    return Agent(ScriptedRuntime(["Hi there."] * 5), name="echo")


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[BackgroundServer]:
    """An agent over A2A behind a token, one origin allowed."""
    app = a2a_app(
        echo(),
        tmp_path / "tasks.db",
        api_token=TOKEN,
        allowed_origins=["https://app.example"],
        max_body=2000,
    )
    with BackgroundServer(app, lifespan="on") as server:
        yield server


async def test_a_typed_answer_is_a_data_artifact(tmp_path: Path) -> None:
    runtime = ScriptedRuntime(['{"customer": "Maria", "quantity": 3}'])
    agent = Agent(runtime, output_type=Order, name="orders", instructions="Extract the order.")
    with BackgroundServer(a2a_app(agent, tmp_path / "t.db"), lifespan="on") as server:
        async with httpx.AsyncClient() as http:
            card = (await http.get(f"{server.url}/.well-known/agent-card.json")).json()
        assert card["defaultOutputModes"] == ["application/json"]
        client = await sdk_client(server.url, streaming=False)
        [response] = [r async for r in client.send_message(user_message(Part(text="3 for Maria")))]
        [artifact] = response.task.artifacts
        [part] = artifact.parts
        assert part.WhichOneof("content") == "data"
        assert MessageToDict(part.data) == {"customer": "Maria", "quantity": 3}


async def test_the_token_is_required_and_the_card_says_so(guarded: BackgroundServer) -> None:
    async with httpx.AsyncClient() as http:
        card = (await http.get(f"{guarded.url}/.well-known/agent-card.json")).json()
        answers = [
            await http.post(f"{guarded.url}/a2a", json=RPC, headers=headers)
            for headers in ({}, {"Authorization": "Bearer wrong"})
        ]
    bearer = card["securitySchemes"]["bearer"]
    scheme = {"scheme": "Bearer", "description": "the server's API token"}
    assert bearer["httpAuthSecurityScheme"] == scheme  # as A2A 1.0 spells it
    assert bearer == {"httpAuthSecurityScheme": scheme, "type": "http", **scheme}  # and 0.3
    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert TOKEN not in answer.text
    refused = await sdk_client(guarded.url, streaming=False)
    with pytest.raises(A2AClientError, match="401"):
        await refused.get_task(GetTaskRequest(id="nope"))
    client = await sdk_client(guarded.url, streaming=True, token=TOKEN)
    responses = [r async for r in client.send_message(user_message(Part(text="hello")))]
    assert responses[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        (
            {"Origin": "https://evil.example"},
            403,
            "requests from the origin 'https://evil.example'",
        ),
        ({"Host": "evil.example"}, 403, "does not answer to the host 'evil.example'"),
        ({"Sec-Fetch-Site": "cross-site"}, 403, "a cross-site page"),
        (
            {"Content-Type": "text/plain"},
            415,
            "Content-Type must be application/json (got text/plain)",
        ),
    ],
)
def test_cross_site_requests_are_refused(
    guarded: BackgroundServer, headers: dict[str, str], status: int, says: str
) -> None:
    sent = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **headers}
    answer = httpx.post(f"{guarded.url}/a2a", content=b'{"jsonrpc": "2.0"}', headers=sent)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["errors"][0]["message"]


def test_an_allowed_origin_gets_cors_and_an_answer(guarded: BackgroundServer) -> None:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Origin": "https://app.example",
        "A2A-Version": "1.0",  # without it, a request is taken for A2A 0.3
    }
    answer = httpx.post(f"{guarded.url}/a2a", json=RPC, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert answer.json()["error"]["message"] == "Task not found"


def test_a_body_past_the_limit_is_refused(guarded: BackgroundServer) -> None:
    body: dict[str, Any] = {**RPC, "params": {"id": "x" * 3000}}
    answer = httpx.post(
        f"{guarded.url}/a2a", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 413
    assert "(max_body is 2000)" in answer.json()["errors"][0]["message"]


async def test_serve_offers_a2a_beside_the_api_behind_the_same_token(tmp_path: Path) -> None:
    agent = echo()
    app = create_app(agent.runtime, agent=agent, api_token=TOKEN, a2a=tmp_path / "tasks.db")
    with BackgroundServer(app, lifespan="on") as server:
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"{server.url}/a2a", json=RPC)).status_code == 401
        client = await sdk_client(server.url, streaming=False, token=TOKEN)
        [response] = [r async for r in client.send_message(user_message(Part(text="hello")))]
        assert [p.text for p in response.task.artifacts[0].parts] == ["Hi there."]
    assert (tmp_path / "tasks.db").exists()


async def test_without_an_agent_serve_offers_one_of_its_runtime_and_tools(tmp_path: Path) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=2, b=3), "2 + 3 = 5"])
    app = create_app(runtime, tools=[add], a2a=tmp_path / "tasks.db")
    with BackgroundServer(app, lifespan="on") as server:
        async with httpx.AsyncClient() as http:
            card = (await http.get(f"{server.url}/.well-known/agent-card.json")).json()
        assert [skill["id"] for skill in card["skills"]] == ["agent", "add"]
        client = await sdk_client(server.url, streaming=False)
        sent = user_message(Part(text="2 + 3?"), context_id="ctx-1")
        [response] = [r async for r in client.send_message(sent)]
        assert [p.text for p in response.task.artifacts[0].parts] == ["2 + 3 = 5"]
        other = [r async for r in client.send_message(user_message(Part(text="hi")))]
        failed = other[0].task.status  # the script has no turn left: the run raises
        assert failed.state == TaskState.TASK_STATE_FAILED
        assert failed.message.parts[0].text == (
            "AssertionError: the script has 2 turn(s) but request 3 asked for another"
        )
        listed = await client.list_tasks(ListTasksRequest(context_id="ctx-1"))
    assert [task.id for task in listed.tasks] == [response.task.id]
    runtime.assert_complete()


def test_the_a2a_store_option_needs_a2a(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--a2a-store", "tasks.db"]) == 2
    assert capsys.readouterr().err == "error: --a2a-store: applies to A2A only; add --a2a\n"


def test_the_stores_durability_is_checked_by_name(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^synchronous: must be FULL or NORMAL \(got 'OFF'\)$"):
        SessionTaskStore(tmp_path / "t.db", synchronous="OFF")  # type: ignore[arg-type]
