"""The agent loop and what a run produces.

- `agent`: the `Agent` (settings, tools, a model) and its entry points;
- `run`: `AgentRun`, one run and its loop; `core`: a run's state, saved and restored as a
  `RunState`; `tool_step`: one step's tool calls; `approval`: pausing and resuming;
  `output`: structured answers; `journaled`: runs with a session; `handoffs`: an agent
  handing a run over to another (`takeover`: the agent in force changing);
- `hooks`: `RunHooks`, the public seam into every run; `guardrails`: checks of the input,
  the answer and tool calls, run by hooks (`guardrail_hooks`); `settings`: `AgentSettings`;
- `results`: `RunResult`, `ToolCallRecord`, `PendingCall`, `RunState`; `events`: the typed
  events of a streamed run.
"""

from agentkit.agent.agent import Agent
from agentkit.agent.guardrails import (
    GuardrailResult,
    InputGuardrail,
    OutputGuardrail,
    ToolGuardrail,
    Verdict,
)
from agentkit.agent.handoffs import Handoff, drop_tool_traffic, handoff, keep_last
from agentkit.agent.hooks import RunHooks
from agentkit.agent.results import (
    HandoffRecord,
    OutputT,
    PendingCall,
    RunResult,
    RunState,
    StopReason,
    ToolCallRecord,
)
from agentkit.agent.run import AgentRun, ModelResponse, ToolResults
from agentkit.agent.settings import AgentSettings
from agentkit.tools.context import RunContext

__all__ = [
    "Agent",
    "AgentRun",
    "AgentSettings",
    "GuardrailResult",
    "Handoff",
    "HandoffRecord",
    "InputGuardrail",
    "ModelResponse",
    "OutputGuardrail",
    "OutputT",
    "PendingCall",
    "RunContext",
    "RunHooks",
    "RunResult",
    "RunState",
    "StopReason",
    "ToolCallRecord",
    "ToolGuardrail",
    "ToolResults",
    "Verdict",
    "drop_tool_traffic",
    "handoff",
    "keep_last",
]
