"""`A2AAgent`: a remote A2A agent as a tool, against a server written with the official SDK's
server classes and against our own, both under uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from starlette.applications import Starlette

from agentkit import (
    Agent,
    ApprovalRequired,
    FunctionRuntime,
    Generation,
    Message,
    ModelRequest,
    RunContext,
    ScriptedRuntime,
    handoff,
    tool,
)
from agentkit.agent.events import RunFinished, TextDelta
from agentkit.errors import UserError
from agentkit.protocols.a2a import A2AAgent
from agentkit.protocols.a2a.client import A2AError, A2ATaskError
from agentkit.server.a2a import a2a_app
from agentkit.server.background import BackgroundServer

from support.a2a import BANK
from support.server import TOKEN
from support.temporal_server import free_port


class Echo(AgentExecutor):
    """Says it is working, then answers `echo: <text>`; asks back on a question mark."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        assert context.message is not None
        await event_queue.enqueue_event(
            Task(
                id=task_id,
                context_id=context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                history=[context.message],
            )
        )
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work(updater.new_agent_message([Part(text="echoing")]))
        text = context.get_user_input()
        if text.endswith("?"):
            await updater.requires_input(updater.new_agent_message([Part(text="Which city?")]))
            return
        await updater.add_artifact([Part(text=f"echo: {text}")], name="echo")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


@pytest.fixture(scope="module")
def sdk_echo() -> Iterator[BackgroundServer]:
    """An echo agent served by the A2A SDK's own server classes, nothing of ours."""
    port = free_port()  # the port first: the card names the URL
    url = f"http://127.0.0.1:{port}/rpc"
    card = AgentCard(
        name="Echo Agent",
        description="Repeats what it is told.",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="Echo.", tags=["echo"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card
    )
    app = Starlette(
        routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/rpc")]
    )
    with BackgroundServer(app, port=port) as server:
        yield server


def caller(remote: A2AAgent, *turns: Any) -> Agent[str]:
    return Agent(ScriptedRuntime(list(turns)), tools=[remote], name="main")


async def test_a_remote_sdk_agent_answers_as_a_tool_and_streams_its_progress(
    sdk_echo: BackgroundServer,
) -> None:
    remote = A2AAgent(sdk_echo.url)
    agent = caller(remote, ScriptedRuntime.call("Echo_Agent", input="hi"), "It said hi.")
    async with agent:
        tool = remote.tools["Echo_Agent"]
        assert tool.description == "Repeats what it is told."
        events = [event async for event in agent.stream("Ask the echo agent.")]
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    result = finished.result
    assert result.tool_calls[0].output == "echo: hi"
    assert result.output == "It said hi."
    progress = [e.text for e in events if isinstance(e, TextDelta) and e.path == "main/Echo_Agent"]
    assert progress == ["echoing\n", "echo: hi"]


async def test_without_streaming_the_answer_is_the_same(sdk_echo: BackgroundServer) -> None:
    remote = A2AAgent(sdk_echo.url, name="echo", streaming=False)
    agent = caller(remote, ScriptedRuntime.call("echo", input="hello"), "Done.")
    result = await agent.run("Ask the echo agent.")
    assert result.tool_calls[0].output == "echo: hello"


async def test_a_remote_question_pauses_the_run_and_the_answer_goes_back_as_text(
    sdk_echo: BackgroundServer,
) -> None:
    remote = A2AAgent(sdk_echo.url, name="echo")
    agent = caller(remote, ScriptedRuntime.call("echo", input="weather?"), "It echoed.")
    async with agent:
        paused = await agent.run("Ask the echo agent.")
        [call] = paused.pending
        assert call.question == "Which city?"
        assert set(call.data) == {"task_id", "context_id"}  # no calls named: a foreign server
        assert paused.state is not None
        result = await agent.resume(paused.state, deny={call.id: "Paris, please"})
    # The reply went to the same task, in words; the task then completed.
    assert result.tool_calls[0].output == "echo: deny: Paris, please"


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[BackgroundServer]:
    """Our own server: the bank agent over A2A, behind a token."""
    namespace: dict[str, Any] = {}
    exec(BANK, namespace)
    app = a2a_app(namespace["agent"], tmp_path / "tasks.db", api_token=TOKEN)
    with BackgroundServer(app, lifespan="on") as server:
        yield server


async def test_our_own_server_answers_and_its_approval_question_pauses_the_run(
    bank: BackgroundServer,
) -> None:
    remote = A2AAgent(bank.url, token=TOKEN)
    agent = caller(
        remote,
        ScriptedRuntime.call("bank", input="hello"),
        ScriptedRuntime.call("bank", input="please pay bob"),
        "Bob is paid.",
    )
    async with agent:
        paused = await agent.run("Greet the bank, then pay bob.")
        greeted = paused.tool_calls[0]
        assert greeted.output == "You said: hello"
        [call] = paused.pending
        assert call.question is not None
        assert call.question.startswith(
            'Approval needed for transfer({"to": "bob", "amount": 250})'
        )
        assert 'To decide, reply "approve" or "deny"' in call.question
        assert paused.state is not None
        result = await agent.resume(paused.state, approve=[call.id])
    assert result.tool_calls[1].output == "Done: sent 250 EUR to bob."
    assert remote.card is not None and remote.card.name == "bank"


async def test_without_the_token_the_call_fails_and_the_token_is_never_shown(
    bank: BackgroundServer,
) -> None:
    remote = A2AAgent(bank.url, token="not-the-token")
    agent = caller(remote, ScriptedRuntime.call("bank", input="hello"), "No.")
    result = await agent.run("Greet the bank.")
    assert "401" in (result.tool_calls[0].error or "")
    assert "not-the-token" not in repr(remote) + (result.tool_calls[0].error or "")


async def test_an_unreachable_agent_fails_to_start_naming_its_url() -> None:
    remote = A2AAgent("http://127.0.0.1:9/", token="secret-token")
    with pytest.raises(A2AError) as raised:
        async with caller(remote, "unused"):
            pass
    assert str(raised.value).startswith("A2A agent at http://127.0.0.1:9: ")
    assert "secret-token" not in str(raised.value)


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(
        UserError, match=r"url: must be an http:// or https:// address \(got 'ftp://x'\)"
    ):
        A2AAgent("ftp://x")


async def test_a_given_http_client_is_used_as_it_is(bank: BackgroundServer) -> None:
    with pytest.raises(UserError, match=r"token, headers: with http_client, set them on that"):
        A2AAgent(bank.url, token=TOKEN, http_client=httpx.AsyncClient())
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        remote = A2AAgent(bank.url, http_client=http)
        result = await caller(remote, ScriptedRuntime.call("bank", input="hi"), "Ok.").run("Hi")
        assert result.tool_calls[0].output == "You said: hi"
        assert not http.is_closed  # the caller's to close


async def test_a_remote_agent_takes_over_a_handed_off_conversation(
    sdk_echo: BackgroundServer,
) -> None:
    echo = A2AAgent(sdk_echo.url, name="echo").as_agent(description="Repeats what it is told.")
    triage = Agent(
        ScriptedRuntime([ScriptedRuntime.call("transfer_to_echo")]),
        name="triage",
        handoffs=[echo],
    )
    transfer = triage.toolset.get("transfer_to_echo")
    assert transfer is not None and transfer.description == "Repeats what it is told."
    result = await triage.run("hello there")
    assert result.output == "echo: hello there"
    assert [(h.source, h.target) for h in result.handoffs] == [("triage", "echo")]


async def test_a_remote_agent_handed_off_to_can_answer_back(bank: BackgroundServer) -> None:
    remote = A2AAgent(bank.url, name="bank", token=TOKEN)
    model = ScriptedRuntime([ScriptedRuntime.call("transfer_to_bank"), "The bank says hi."])
    triage = Agent(model, name="triage", handoffs=[handoff(remote.as_agent(), returns=True)])
    result = await triage.run("hi")
    # The bank's answer comes back as the transfer's result.
    assert model.requests[1].messages[-1].content == "You said: hi"
    assert (result.output, result.agent) == ("The bank says hi.", "triage")


def test_a_remote_agent_handed_off_to_needs_a_name() -> None:
    with pytest.raises(UserError, match=r"name: required for a remote agent handed off to"):
        A2AAgent("http://127.0.0.1:9").as_agent()


async def test_the_remote_agent_is_sent_the_words_of_the_conversation(
    sdk_echo: BackgroundServer,
) -> None:
    echo = A2AAgent(sdk_echo.url, name="echo").as_agent()
    triage = Agent(
        ScriptedRuntime([ScriptedRuntime.call("transfer_to_echo")]),
        name="triage",
        handoffs=[echo],
        instructions="Route the user.",
    )
    earlier = [
        Message(role="user", content="I am Ana."),
        Message(role="assistant", content="Hi Ana."),
    ]
    result = await triage.run("Say my name.", history=earlier)
    # No system message, no tool traffic: the words, each turn with its role.
    assert result.output == "echo: user: I am Ana.\n\nassistant: Hi Ana.\n\nuser: Say my name."


async def test_a_question_of_a_remote_agent_handed_off_to_ends_the_run(
    sdk_echo: BackgroundServer,
) -> None:
    echo = A2AAgent(sdk_echo.url, name="echo").as_agent()
    triage = Agent(
        ScriptedRuntime([ScriptedRuntime.call("transfer_to_echo")]), name="triage", handoffs=[echo]
    )
    with pytest.raises(A2ATaskError, match=r"as input-required; it asks: Which city\?$"):
        await triage.run("weather?")


async def test_a_served_tool_that_asks_has_its_question_carried_to_our_run(
    tmp_path: Path,
) -> None:
    @tool
    def ship(item: str, context: RunContext) -> str:
        """Ship an item.

        Args:
            item: What to ship.
        """
        if context.decision is None:
            raise ApprovalRequired(f"{item} is fragile: ship it by air?", data={"by": "air"})
        return f"shipped {item} by {context.decision.data['by']}"

    def warehouse_model(request: ModelRequest) -> Generation | str:
        last = request.messages[-1]
        if last.role == "tool":
            return last.content
        return ScriptedRuntime.call("ship", item="vase")

    warehouse = Agent(FunctionRuntime(warehouse_model), tools=[ship], name="warehouse")
    app = a2a_app(warehouse, tmp_path / "tasks.db")
    with BackgroundServer(app, lifespan="on") as server:
        agent = caller(
            A2AAgent(server.url),
            ScriptedRuntime.call("warehouse", input="ship the vase"),
            "The vase is on its way.",
        )
        paused = await agent.run("Ship the vase.")
        [call] = paused.pending
        # The remote status names the call and its tool's question; the status' data too.
        assert call.question is not None
        assert call.question.startswith('Approval needed for ship({"item": "vase"}) [id ')
        assert "], which asks: vase is fragile: ship it by air?. To decide, " in call.question
        assert paused.state is not None
        result = await agent.resume(paused.state, approve=[call.id])
    assert result.tool_calls[0].output == "shipped vase by air"
    assert result.output == "The vase is on its way."
