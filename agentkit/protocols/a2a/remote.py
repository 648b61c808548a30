"""A remote A2A agent as an agent here: the handoff target `A2AAgent.as_agent()` makes.

The agent's runtime is the remote agent: each of its model calls sends the conversation, as
the agent sees it, to the remote agent as a new task, and the task's answer is the model's
answer. Handed the conversation (`Agent(..., handoffs=[remote.as_agent()])`), it answers the
user itself; with `handoff(..., returns=True)` its answer goes back to the agent that handed
off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from agentkit.agent import Agent
from agentkit.model_api import Message, ModelRequest, StreamChunk
from agentkit.runtimes.base import Capabilities, Runtime

__all__ = ["A2ARuntime", "Remote", "conversation_text", "remote_agent"]


class Remote(Protocol):
    """What of a remote agent (`A2AAgent`) the runtime uses."""

    @property
    def started(self) -> bool:
        """Whether its connection is open."""
        ...

    async def send(self, text: str, *, report: bool = True) -> str:
        """`text` as a new task; its answer."""
        ...

    def connection(self) -> AbstractAsyncContextManager[Remote]:
        """A connection of its own, opened and closed with `async with`."""
        ...


def conversation_text(messages: Sequence[Message]) -> str:
    """What a remote agent is sent of a conversation: the user's and the assistant's words,
    each turn marked with its role; a conversation of one user message is sent as it is.
    System messages and tool traffic stay here."""
    turns = [m for m in messages if m.role in ("user", "assistant") and m.content.strip()]
    if len(turns) == 1 and turns[0].role == "user":
        return turns[0].content
    return "\n\n".join(f"{m.role}: {m.content}" for m in turns)


class A2ARuntime(Runtime):
    """The remote agent of `remote` behind the Runtime interface: no tools; the conversation
    in, the remote task's answer out. When `remote` is not started (by its owner, `async
    with remote:`), each call opens a connection for itself and closes it after.

    Args:
        remote: the remote agent.
    """

    name = "a2a"
    capabilities = Capabilities(tools=False)

    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        text = conversation_text(request.messages)
        if self.remote.started:
            answer = await self.remote.send(text, report=False)
        else:
            async with self.remote.connection() as remote:
                answer = await remote.send(text, report=False)
        yield StreamChunk(response=answer)


def remote_agent(remote: Remote, name: str, description: str | None, **options: Any) -> Agent[str]:
    """An `Agent` named `name` whose runtime is `remote` (see `A2AAgent.as_agent`)."""
    instructions = description or f"The remote agent {name}, reached over A2A."
    return Agent(A2ARuntime(remote), name=name, instructions=instructions, **options)
