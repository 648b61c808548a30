"""A remote A2A agent as a tool: `A2AAgent(url)` goes in `tools=[...]` like an MCP server.

When the calling agent starts, the source reads the remote agent's card
(`<url>/.well-known/agent-card.json`) and offers one tool, named after the card's agent
(or `name`), described by its description, taking the request as `input`. A call sends the
request as a new task (streaming when the remote agent can) and answers with the task's
artifacts: text as it is, data as JSON.

While the task runs, its status messages and artifact text are streamed into the calling
run's events as `TextDelta`s with the path `caller/<tool name>`, like an agent used as a tool.

A task that goes `input-required` asks the calling run's person: the tool raises
`ApprovalRequired` with the remote agent's question (its status message's words), the task's
ids as the call's data, and the calling run pauses for approval. Resumed, the call sends the
decision to the same task and goes on until it ends: to an agentkit server, the data part
`{"approve": [ids]}` or `{"deny": {id: reason}}` for the calls its status named; to another
server, the text `approve`, `deny` or `deny: <reason>`. The task is named by the saved data, so
a run resumed in another process continues it too.

A task that ends otherwise than completed is a failed call, told to the model: `failed`,
`rejected` and `canceled` with the remote agent's status message, `auth-required` with its
question (`A2ATaskError`).

`A2AAgent.as_agent()` makes the remote agent an agent to hand off to instead
(`agentkit.protocols.a2a.remote`).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

import httpx
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.types import (
    AgentCard,
    Artifact,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)

from agentkit.agent import Agent
from agentkit.agent.core import current_run
from agentkit.agent.events import TextDelta
from agentkit.errors import AgentKitError, ApprovalRequired, UserError
from agentkit.protocols.a2a.parts import data_part, part_data, parts_text
from agentkit.protocols.a2a.remote import remote_agent
from agentkit.tools import Tool, ToolSource
from agentkit.tools.context import Decision, RunContext

__all__ = ["A2AAgent", "A2AError", "A2ATaskError"]

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")
_UNFINISHED: dict[int, str] = {
    TaskState.TASK_STATE_INPUT_REQUIRED: "input-required",
    TaskState.TASK_STATE_AUTH_REQUIRED: "auth-required",
    TaskState.TASK_STATE_FAILED: "failed",
    TaskState.TASK_STATE_REJECTED: "rejected",
    TaskState.TASK_STATE_CANCELED: "canceled",
}


class A2AError(AgentKitError):
    """A remote A2A agent could not be reached or read; the message names it and says why."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"A2A agent at {url}: {reason}")


class A2ATaskError(AgentKitError):
    """A remote task ended other than completed: its `state` and what the agent said."""

    def __init__(self, agent: str, task_id: str, state: str, said: str) -> None:
        self.agent = agent
        self.task_id = task_id
        self.state = state
        self.said = said
        what = "asks" if state in ("input-required", "auth-required") else "says"
        super().__init__(
            f"the remote agent {agent} stopped task {task_id} as {state}; it {what}: "
            f"{said or '(nothing)'}"
        )


class A2AAgent(ToolSource):
    """A remote A2A agent, offered to the model as one tool.

    Args:
        url: the agent's base URL (its card is at `<url>/.well-known/agent-card.json`).
        name: the tool's name; default: the card's name, with characters a tool name cannot
            have replaced by `_`.
        description: the tool's description; default: the card's.
        token: sent as `Authorization: Bearer <token>` (never shown in reprs or errors).
        headers: more headers for every request.
        timeout: seconds to wait for the card and for each read of an answer.
        http_client: the `httpx.AsyncClient` to use (not closed here; give it the token and
            headers yourself); default: one of its own.
        streaming: stream the task's updates when the agent can.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        description: str | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        http_client: httpx.AsyncClient | None = None,
        streaming: bool = True,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise UserError(f"url: must be an http:// or https:// address (got {url!r})")
        if not timeout > 0:
            raise UserError(f"timeout: must be > 0 seconds (got {timeout})")
        if http_client is not None and (token is not None or headers):
            # Set on a client others use too, they would go with every request it makes.
            raise UserError(
                "token, headers: with http_client, set them on that client "
                "(httpx.AsyncClient(headers=...))"
            )
        self.url = url.rstrip("/")
        self.name = name or self.url
        self._tool_name = name
        self._description = description
        self._token = token
        self._headers = dict(headers or {})
        self.timeout = timeout
        self.streaming = streaming
        self._given_client = http_client
        self._http: httpx.AsyncClient | None = None
        self._client: Client | None = None
        self._tools: dict[str, Tool] = {}
        self._version = 0
        self.card: AgentCard | None = None
        """The remote agent's card, once started."""

    def __repr__(self) -> str:
        return f"A2AAgent({self.url!r}, name={self.name!r})"

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The one tool calling the remote agent."""
        if self._client is None:
            raise UserError(f"{self!r}: not started (use it inside `async with agent:`)")
        return self._tools

    @property
    def version(self) -> int:
        """Changes each time the source starts."""
        return self._version

    @property
    def started(self) -> bool:
        """Whether the card is read and the connection open."""
        return self._client is not None

    def as_agent(
        self, name: str | None = None, description: str | None = None, **options: Any
    ) -> Agent[str]:
        """The remote agent as an `Agent` here, for `handoffs=[...]`: its runtime sends the
        conversation to the remote agent and answers with the remote task's answer (see
        `agentkit.protocols.a2a.remote`). It connects when first used.

        Args:
            name: the agent's name (the transfer tool is `transfer_to_<name>`); default: the
                `name` this source was given.
            description: what the transfer tool says of it; default: that it is a remote
                agent.
            **options: more `Agent` settings (`max_steps`, `deadline`, ...).

        Raises:
            UserError: no name, given here or to the source (the card is read only later).
        """
        name = name or self._tool_name
        if name is None:
            raise UserError(
                "name: required for a remote agent handed off to, here or as "
                "A2AAgent(url, name=...): its card is read only when it is first used"
            )
        return remote_agent(self, name, description or self._description, **options)

    def connection(self) -> A2AAgent:
        """A copy of this source, not started, for a connection of its own
        (`async with remote.connection() as own:`)."""
        return A2AAgent(
            self.url,
            name=self._tool_name,
            description=self._description,
            token=self._token,
            headers=self._headers,
            timeout=self.timeout,
            http_client=self._given_client,
            streaming=self.streaming,
        )

    async def start(self) -> None:
        """Read the card and connect.

        Raises:
            A2AError: the card could not be read (the reason, never the token).
        """
        headers = {**self._headers}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._given_client is not None:
            self._http = self._given_client
        else:
            self._http = httpx.AsyncClient(headers=headers, timeout=self.timeout)
        try:
            self.card = await A2ACardResolver(self._http, self.url).get_agent_card()
            config = ClientConfig(httpx_client=self._http, streaming=self.streaming)
            self._client = ClientFactory(config).create(self.card)
        except Exception as exc:
            await self.stop()
            raise A2AError(self.url, f"{type(exc).__name__}: {exc}") from None
        self.name = self._tool_name or _UNSAFE.sub("_", self.card.name).strip("_")[:64] or "agent"
        self._tools = {self.name: self._make_tool(self.card)}
        self._version += 1

    async def stop(self) -> None:
        """Close the connection (and the HTTP client, when it is this source's own)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing must not raise: nothing is left to do
                await client.close()
        if self._http is not None and self._given_client is None:
            await self._http.aclose()
        self._http = None

    def _make_tool(self, card: AgentCard) -> Tool:
        parameters = {
            "type": "object",
            "properties": {
                "input": {
                    "type": "string",
                    "description": "The request, in plain words, with everything the agent "
                    "needs: it sees nothing else of this conversation.",
                }
            },
            "required": ["input"],
            "additionalProperties": False,
        }

        async def call(input: str, context: RunContext[Any]) -> str:
            return await self.ask(input, context.decision)

        description = self._description or card.description or f"The {card.name} agent."
        made = Tool(call, name=self.name, description=description, parameters=parameters)
        made.context_param = "context"  # the decision, when the call comes back to a question
        return made

    async def ask(self, text: str, decision: Decision | None = None) -> str:
        """The tool's call: `text` as a new task, or with `decision` (a person's answer to the
        task's question) the reply to the task the decision's data names; its answer.

        Raises:
            ApprovalRequired: the task waits for input: its question, and the task as data.
            A2ATaskError: the task ended other than completed.
            UserError: the source is not started.
        """
        if decision is None:
            progress = await self._exchange(_message([Part(text=text)]), report=True)
        else:
            progress = await self._exchange(_reply(decision), report=True)
        if progress.state == TaskState.TASK_STATE_INPUT_REQUIRED:
            data: dict[str, Any] = {"task_id": progress.task_id, "context_id": progress.context_id}
            if progress.pending is not None:
                data["pending"] = progress.pending
            question = progress.words or progress.said or "(no question given)"
            raise ApprovalRequired(question, data=data)
        return self._answer(progress)

    async def send(self, text: str, *, report: bool = True) -> str:
        """Send `text` as a new task and answer with its artifacts' text; with `report`, the
        task's progress goes into the events of the run under way.

        Raises:
            A2ATaskError: the task ended other than completed.
            UserError: the source is not started.
        """
        return self._answer(await self._exchange(_message([Part(text=text)]), report=report))

    async def _exchange(self, message: Message, *, report: bool) -> _Progress:
        if self._client is None:
            raise UserError(f"{self!r}: not started (use it inside `async with agent:`)")
        progress = _Progress(self.name, report=report)
        async for response in self._client.send_message(SendMessageRequest(message=message)):
            progress.take(response)
        return progress

    def _answer(self, progress: _Progress) -> str:
        if progress.state not in (TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_UNSPECIFIED):
            state = _UNFINISHED.get(progress.state, TaskState.Name(progress.state))
            raise A2ATaskError(self.name, progress.task_id, state, progress.said)
        return progress.answer()


def _message(parts: list[Part], task_id: str = "", context_id: str = "") -> Message:
    return Message(
        role=Role.ROLE_USER,
        message_id=uuid.uuid4().hex,
        parts=parts,
        task_id=task_id,
        context_id=context_id,
    )


def _reply(decision: Decision) -> Message:
    """The message that gives a person's decision to the remote task that asked: call by call
    to an agentkit server (its status named the pending calls), in words to any other."""
    data = decision.data if isinstance(decision.data, dict) else {}
    task_id = data.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise UserError(f"the decision's data names no remote task (got {decision.data!r})")
    context_id = data.get("context_id") if isinstance(data.get("context_id"), str) else ""
    ids = data.get("pending")
    reason = decision.reason or ""
    if isinstance(ids, list) and ids:
        answer = {"approve": ids} if decision.approved else {"deny": dict.fromkeys(ids, reason)}
        part = data_part(answer)
    elif decision.approved:
        part = Part(text="approve")
    else:
        part = Part(text=f"deny: {reason}" if reason.strip() else "deny")
    return _message([part], task_id, str(context_id or ""))


class _Progress:
    """What a task's responses said so far; text streamed into the calling run's events."""

    def __init__(self, name: str, *, report: bool) -> None:
        parent = current_run.get()
        self.emit = parent.emit if parent is not None and report else None
        self.path = f"{parent.path}/{name}" if parent is not None else name
        self.step = parent.steps if parent is not None else 0
        self.task_id = ""
        self.context_id = ""
        self.state: int = TaskState.TASK_STATE_UNSPECIFIED
        self.said = ""
        self.words = ""
        """The text parts of the last status message."""
        self.pending: list[str] | None = None
        """The ids of the calls an agentkit server's last status says wait for approval."""
        self.artifacts: dict[str, list[Part]] = {}
        self.reply: list[Part] = []

    def _tell(self, text: str) -> None:
        if self.emit is not None and text:
            self.emit(TextDelta(self.step, text, path=self.path))

    def take(self, response: StreamResponse) -> None:
        kind = response.WhichOneof("payload")
        if kind == "message":  # a direct answer, no task
            self.reply.extend(response.message.parts)
            self.state = TaskState.TASK_STATE_COMPLETED
            self._tell(parts_text(response.message.parts))
        elif kind == "task":
            task = response.task
            self.task_id, self.context_id = task.id, task.context_id
            self._status(task.status.state, task.status.message.parts)
            for artifact in task.artifacts:
                self.artifacts[artifact.artifact_id] = list(artifact.parts)
        elif kind == "status_update":
            update = response.status_update
            self.task_id, self.context_id = update.task_id, update.context_id
            self._status(update.status.state, update.status.message.parts)
        elif kind == "artifact_update":
            self._artifact(response.artifact_update.artifact, response.artifact_update.append)

    def _status(self, state: int, parts: Any) -> None:
        self.state = state
        said = parts_text(parts)
        if said:
            self.said = said
            # The progress shown is the words; data parts (ids and such) go to the model only.
            words = parts_text([p for p in parts if p.WhichOneof("content") == "text"])
            self.words = words
            self.pending = _pending_ids(parts)
            self._tell(words + "\n" if words else "")

    def _artifact(self, artifact: Artifact, append: bool) -> None:
        kept = self.artifacts.setdefault(artifact.artifact_id, [])
        if not append:
            kept.clear()
        kept.extend(artifact.parts)
        self._tell(parts_text(artifact.parts))

    def answer(self) -> str:
        if self.artifacts:
            return "\n".join(parts_text(parts) for parts in self.artifacts.values())
        return parts_text(self.reply)


def _pending_ids(parts: Any) -> list[str] | None:
    """The call ids of an agentkit server's `{"pending": [{"id": ...}, ...]}` data part."""
    for part in parts:
        if part.WhichOneof("content") != "data":
            continue
        data = part_data(part)
        pending = data.get("pending") if isinstance(data, dict) else None
        if isinstance(pending, list):
            ids = [c.get("id") for c in pending if isinstance(c, dict)]
            if ids and all(isinstance(i, str) for i in ids):
                return [str(i) for i in ids]
    return None
