"""`agentkit serve --a2a`, driven by the official A2A SDK's client over loopback: the card,
sending, streaming, getting and cancelling tasks, approval as input-required, a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from a2a.client import Client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Part,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Value

from support.a2a import BANK, ServeProcess, sdk_client, serving_bank, user_message

pytestmark = pytest.mark.subprocess

COMPLETED = TaskState.TASK_STATE_COMPLETED
INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serving_bank(tmp_path_factory.mktemp("bank")) as server:
        yield server


async def send(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    return [response async for response in client.send_message(request)]


def final_task(responses: list[StreamResponse]) -> Task:
    """The task of a non-streaming send's one answer."""
    [response] = responses
    assert response.WhichOneof("payload") == "task", response
    return response.task


def texts(task: Task) -> list[str]:
    return [part.text for artifact in task.artifacts for part in artifact.parts]


def data(part: Part) -> Any:
    return MessageToDict(part.data)


def decision(value: Any) -> Part:
    return Part(data=ParseDict(value, Value()))


async def pause_payment(client: Client) -> Task:
    """Ask the bank to pay: the task comes back waiting for approval of the transfer."""
    task = final_task(await send(client, user_message(Part(text="please pay bob"))))
    assert task.status.state == INPUT_REQUIRED
    return task


def test_the_card_names_the_agent_its_skills_and_its_endpoint(bank: ServeProcess) -> None:
    card = httpx.get(f"{bank.url}/.well-known/agent-card.json").json()
    assert (card["name"], card["description"]) == ("bank", "Moves money between accounts.")
    skills = {skill["id"]: skill["description"] for skill in card["skills"]}
    assert skills == {
        "bank": "Moves money between accounts.",
        "balance": "The account's balance, in euros.",
        "transfer": "Send money.",
        "audit": "Audit the account's history; takes a while.",
    }
    interfaces = [
        (i["url"], i["protocolBinding"], i["protocolVersion"]) for i in card["supportedInterfaces"]
    ]
    assert interfaces == [(f"{bank.url}/a2a", "JSONRPC", v) for v in ("1.0", "0.3")]
    # What A2A 0.3 clients read of a card.
    assert (card["url"], card["protocolVersion"]) == (f"{bank.url}/a2a", "0.3")
    assert card["capabilities"]["streaming"] is True
    assert "securitySchemes" not in card  # no token: nothing to send


async def test_a_message_becomes_a_completed_task_with_the_answer_as_text(
    bank: ServeProcess,
) -> None:
    client = await sdk_client(bank.url, streaming=False)
    task = final_task(await send(client, user_message(Part(text="hello"))))
    assert task.status.state == COMPLETED
    assert texts(task) == ["You said: hello"]
    stored = await client.get_task(GetTaskRequest(id=task.id))
    assert (stored.status.state, texts(stored)) == (COMPLETED, ["You said: hello"])
    assert [m.parts[0].text for m in stored.history][:1] == ["hello"]


async def test_a_stream_reports_each_tool_call_then_the_answer(bank: ServeProcess) -> None:
    client = await sdk_client(bank.url, streaming=True)
    responses = await send(client, user_message(Part(text="what is my balance?")))
    kinds = [r.WhichOneof("payload") for r in responses]
    assert kinds[0] == "task" and responses[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    said = [
        r.status_update.status.message.parts[0].text
        for r in responses
        if kinds[responses.index(r)] == "status_update" and r.status_update.status.message.parts
    ]
    assert said == ["calling balance({})", "balance done"]
    [artifact] = [r.artifact_update.artifact for r in responses if r.HasField("artifact_update")]
    assert [p.text for p in artifact.parts] == ["Done: 900."]
    assert responses[-1].status_update.status.state == COMPLETED


async def test_a_paused_run_is_input_required_and_the_clients_approval_completes_it(
    bank: ServeProcess,
) -> None:
    client = await sdk_client(bank.url, streaming=False)
    task = await pause_payment(client)
    text, pending = task.status.message.parts
    [call] = data(pending)["pending"]
    assert (call["name"], call["arguments"]) == ("transfer", {"to": "bob", "amount": 250})
    assert text.text.startswith(
        f'Approval needed for transfer({{"to": "bob", "amount": 250}}) [id {call["id"]}]'
    )
    approve = user_message(
        decision({"approve": [call["id"]]}), task_id=task.id, context_id=task.context_id
    )
    done = final_task(await send(client, approve))
    assert (done.id, done.status.state) == (task.id, COMPLETED)
    assert texts(done) == ["Done: sent 250 EUR to bob."]


async def test_a_text_denial_with_a_reason_is_told_to_the_model(bank: ServeProcess) -> None:
    client = await sdk_client(bank.url, streaming=True)
    task = await pause_payment(await sdk_client(bank.url, streaming=False))
    deny = user_message(Part(text="deny: over budget"), task_id=task.id)
    responses = await send(client, deny)
    assert responses[-1].status_update.status.state == COMPLETED
    stored = await client.get_task(GetTaskRequest(id=task.id))
    assert texts(stored) == ["Done: Error: denied by the user: over budget."]


async def test_a_reply_that_decides_nothing_leaves_the_task_waiting_and_says_why(
    bank: ServeProcess,
) -> None:
    client = await sdk_client(bank.url, streaming=False)
    task = await pause_payment(client)
    again = final_task(await send(client, user_message(Part(text="maybe?"), task_id=task.id)))
    assert again.status.state == INPUT_REQUIRED
    assert again.status.message.parts[0].text == (
        "cannot resume this run: the reply decides nothing ('maybe?'). To decide, reply "
        '"approve" or "deny" (or "deny: <reason>") for every call, or a data part '
        '{"approve": [ids], "deny": {id: reason}}.'
    )
    [call] = data(task.status.message.parts[1])["pending"]
    wrong = user_message(decision({"approve": ["call_nope"]}), task_id=task.id)
    again = final_task(await send(client, wrong))
    assert again.status.state == INPUT_REQUIRED
    assert again.status.message.parts[0].text.startswith(
        f"cannot resume this run: not pending: call_nope (pending: {call['id']}); "
        f"undecided: {call['id']}; approve or deny every pending call. To decide, reply "
    )
    # Still waiting: a valid decision goes through.
    done = final_task(await send(client, user_message(Part(text="approve"), task_id=task.id)))
    assert texts(done) == ["Done: sent 250 EUR to bob."]


async def test_a_running_task_is_cancelled(bank: ServeProcess) -> None:
    streaming = await sdk_client(bank.url, streaming=True)
    client = await sdk_client(bank.url, streaming=False)
    seen: list[StreamResponse] = []
    with anyio.fail_after(60):
        async for response in streaming.send_message(user_message(Part(text="audit please"))):
            seen.append(response)
            message = response.status_update.status.message
            if message.parts and message.parts[0].text.startswith("calling audit"):
                cancelled = await client.cancel_task(
                    CancelTaskRequest(id=response.status_update.task_id)
                )
                assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    task_id = seen[0].task.id
    stored = await client.get_task(GetTaskRequest(id=task_id))
    assert stored.status.state == TaskState.TASK_STATE_CANCELED
    assert not stored.artifacts


async def test_a_task_waiting_for_approval_is_cancelled(bank: ServeProcess) -> None:
    client = await sdk_client(bank.url, streaming=False)
    task = await pause_payment(client)
    cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    stored = await client.get_task(GetTaskRequest(id=task.id))
    assert stored.status.state == TaskState.TASK_STATE_CANCELED


def test_the_a2a_0_3_method_names_are_answered(bank: ServeProcess) -> None:
    message = {
        "role": "user",
        "messageId": "m-1",
        "kind": "message",
        "parts": [{"kind": "text", "text": "hello"}],
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": message}}
    answer = httpx.post(f"{bank.url}/a2a", json=body, timeout=30).json()
    task = answer["result"]
    assert (task["kind"], task["status"]["state"]) == ("task", "completed")
    get = {"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": task["id"]}}
    stored = httpx.post(f"{bank.url}/a2a", json=get, timeout=30).json()["result"]
    assert stored["artifacts"][0]["parts"] == [{"kind": "text", "text": "You said: hello"}]


@pytest.fixture
def restartable(tmp_path: Path) -> ServeProcess:
    """The bank's server of this test alone, not started: the test stops and starts it."""
    (tmp_path / "bank.py").write_text(BANK)
    return ServeProcess(tmp_path / "bank.py", tmp_path / "tasks.db")


async def test_a_task_waiting_for_approval_outlives_a_restart_of_the_server(
    restartable: ServeProcess,
) -> None:
    server = restartable
    with server.running():
        task = await pause_payment(await sdk_client(server.url, streaming=False))
    with server.running():  # a new process, the same file
        client = await sdk_client(server.url, streaming=False)
        stored = await client.get_task(GetTaskRequest(id=task.id))
        assert stored.status.state == INPUT_REQUIRED
        assert stored.status.message.parts[0].text == task.status.message.parts[0].text
        done = final_task(await send(client, user_message(Part(text="approve"), task_id=task.id)))
        assert (done.status.state, texts(done)) == (COMPLETED, ["Done: sent 250 EUR to bob."])


async def test_a_task_cut_short_by_a_crash_is_failed_when_the_server_comes_back(
    restartable: ServeProcess,
) -> None:
    server = restartable
    with server.running():
        client = await sdk_client(server.url, streaming=True)
        with anyio.fail_after(60):
            async for response in client.send_message(user_message(Part(text="audit please"))):
                if response.HasField("task"):
                    task_id = response.task.id
                said = response.status_update.status.message.parts
                if said and said[0].text.startswith("calling audit"):
                    break
        server.kill()  # the audit is under way
    with server.running():
        client = await sdk_client(server.url, streaming=False)
        stored = await client.get_task(GetTaskRequest(id=task_id))
    assert stored.status.state == TaskState.TASK_STATE_FAILED
    assert stored.status.message.parts[0].text == (
        "the server stopped while this task ran; send it again as a new task"
    )
