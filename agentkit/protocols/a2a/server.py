"""An agent offered over A2A: its card, and the JSON-RPC endpoint the A2A SDK's request
handler answers, with tasks in a SQLite file.

```
GET  /.well-known/agent-card.json    the agent card (name, description, skills, interface)
POST /a2a                            JSON-RPC: SendMessage, SendStreamingMessage (SSE),
                                     GetTask, ListTasks, CancelTask, SubscribeToTask, and the
                                     A2A 0.3 names (message/send, message/stream, tasks/get,
                                     tasks/cancel, ...)
```

The SDK's `DefaultRequestHandler` does the protocol (task states, event order, streams,
cancellation); `AgentTaskExecutor` runs the agent and `SessionTaskStore` keeps the tasks.
Security (the token, Host and Origin checks, body limits) is the server's
(`agentkit.server.a2a`), which wraps these routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from a2a.server.agent_execution import RequestContext
from a2a.server.agent_execution.simple_request_context_builder import SimpleRequestContextBuilder
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    SendMessageRequest,
    StringList,
    Task,
)
from a2a.utils.constants import (
    AGENT_CARD_WELL_KNOWN_PATH,
    PROTOCOL_VERSION_0_3,
    PROTOCOL_VERSION_CURRENT,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agentkit.agent import Agent
from agentkit.protocols.a2a.executor import AgentTaskExecutor
from agentkit.protocols.a2a.store import SessionTaskStore

__all__ = ["CARD_PATH", "RPC_PATH", "A2AService", "agent_card"]

CARD_PATH = AGENT_CARD_WELL_KNOWN_PATH
"""Where the agent card is served (A2A 1.0: `/.well-known/agent-card.json`)."""
RPC_PATH = "/a2a"
"""Where the JSON-RPC endpoint is served."""

Endpoint = Callable[[Request], Awaitable[Response]]


def agent_card(
    agent: Agent[Any],
    url: str,
    *,
    description: str | None = None,
    version: str = "1.0.0",
    bearer: bool = False,
) -> AgentCard:
    """The A2A card of `agent`, served at `url` (the JSON-RPC endpoint's address).

    Its name is the agent's (`agent` without one); its description `description`, or the first
    line of its instructions; its skills one for the agent as a whole and one per tool (id and
    name the tool's, its description). With `bearer`, it says that calls need
    `Authorization: Bearer <token>`.
    """
    name = agent.name or "agent"
    if description is None:
        lines = (agent.instructions or "").strip().splitlines()
        description = lines[0] if lines else f"The {name} agent."
    output = "application/json" if agent.output_type is not None else "text/plain"
    skills = [AgentSkill(id=name, name=name, description=description, tags=["agent"])]
    skills += [
        AgentSkill(id=t.name, name=t.name, description=t.description or t.name, tags=["tool"])
        for t in agent.toolset
    ]
    card = AgentCard(
        name=name,
        description=description,
        version=version,
        # One endpoint speaks both versions; the 0.3 entry gives 0.3 clients their card fields.
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=protocol)
            for protocol in (PROTOCOL_VERSION_CURRENT, PROTOCOL_VERSION_0_3)
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=[output],
        skills=skills,
    )
    if bearer:
        scheme = HTTPAuthSecurityScheme(scheme="Bearer", description="the server's API token")
        card.security_schemes["bearer"].CopyFrom(SecurityScheme(http_auth_security_scheme=scheme))
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList()}))
    return card


class _TaskContexts(SimpleRequestContextBuilder):
    """Gives a reply that names its task but not its context the task's context (the SDK
    would make a new one, which the task's events then contradict)."""

    def __init__(self, store: SessionTaskStore) -> None:
        super().__init__()
        self.store = store

    async def build(
        self,
        context: ServerCallContext,
        params: SendMessageRequest | None = None,
        task_id: str | None = None,
        context_id: str | None = None,
        task: Task | None = None,
    ) -> RequestContext:
        if task_id and not context_id:
            stored = await self.store.get(task_id)
            if stored is not None:
                context_id = stored.context_id
        return await super().build(context, params, task_id, context_id, task)


class A2AService:
    """`agent` over A2A, tasks kept in the SQLite file `store`.

    Args:
        agent: the agent answering every task; its tool sources start with `lifespan`.
        store: the SQLite file for tasks (created if missing; may be shared with sessions).
        description: the card's description (default: the first line of the instructions).
        bearer: the card says calls need a bearer token (the server checks it).
        synchronous: how durable each write to `store` is (see `SessionTaskStore`).
    """

    def __init__(
        self,
        agent: Agent[Any],
        store: str | Path,
        *,
        description: str | None = None,
        bearer: bool = False,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        self.agent = agent
        self.store = SessionTaskStore(store, synchronous=synchronous)
        # The card's URL is the request's own (the Host check vouches for it); this one
        # stands in until a request comes.
        self.card = agent_card(agent, RPC_PATH, description=description, bearer=bearer)
        self.handler = DefaultRequestHandler(
            agent_executor=AgentTaskExecutor(agent, self.store),
            task_store=self.store,
            agent_card=self.card,
            request_context_builder=_TaskContexts(self.store),
        )
        self._rpc = JsonRpcDispatcher(self.handler, enable_v0_3_compat=True)

    async def card_endpoint(self, request: Request) -> Response:
        """The agent card, its interface's URL on the address the client used."""
        card = AgentCard()
        card.CopyFrom(self.card)
        for interface in card.supported_interfaces:
            interface.url = str(request.base_url).rstrip("/") + RPC_PATH
        return JSONResponse(agent_card_to_dict(card))

    async def rpc_endpoint(self, request: Request) -> Response:
        """One JSON-RPC request, answered by the SDK's dispatcher."""
        return await self._rpc.handle_requests(request)

    def routes(self, guard: Callable[[Endpoint], Endpoint] | None = None) -> list[BaseRoute]:
        """The card's and the endpoint's routes; `guard` wraps the endpoint (the server's
        token and body checks)."""
        rpc = self.rpc_endpoint if guard is None else guard(self.rpc_endpoint)
        return [
            Route(CARD_PATH, self.card_endpoint, methods=["GET"]),
            Route(RPC_PATH, rpc, methods=["POST"]),
        ]

    @asynccontextmanager
    async def lifespan(self, *, enter_agent: bool = True) -> AsyncIterator[None]:
        """While serving: the agent's tool sources open (unless `enter_agent` is False: the
        caller opens them); after, the tasks still running drained. First, the tasks whose
        run a stopped process left under way are marked failed (`fail_interrupted`)."""
        await self.store.fail_interrupted()
        try:
            if enter_agent:
                async with self.agent:
                    yield
            else:
                yield
        finally:
            await self.handler.aclose()
