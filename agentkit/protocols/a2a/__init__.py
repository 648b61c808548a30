"""A2A (Agent2Agent): agents offered to other agents, and remote agents used as tools.

- `A2AService` (and `agentkit.server.a2a.a2a_app`, `agentkit serve --a2a`): an agent over A2A,
  built on the official SDK's request handler, with tasks in a SQLite file;
- `A2AAgent`: a remote A2A agent as a tool source, for `tools=[...]`, and as an agent to hand
  off to (`A2AAgent.as_agent()`, whose runtime is an `A2ARuntime`).

Needs the `a2a` extra: `pip install 'agentkit[a2a]'`.
"""

from agentkit.protocols.a2a.client import A2AAgent, A2AError, A2ATaskError
from agentkit.protocols.a2a.executor import AgentTaskExecutor
from agentkit.protocols.a2a.remote import A2ARuntime
from agentkit.protocols.a2a.server import A2AService, agent_card
from agentkit.protocols.a2a.store import SessionTaskStore

__all__ = [
    "A2AAgent",
    "A2AError",
    "A2ARuntime",
    "A2AService",
    "A2ATaskError",
    "AgentTaskExecutor",
    "SessionTaskStore",
    "agent_card",
]
