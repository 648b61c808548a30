"""agentkit: tool-calling agents on the Workers AI contract.

```python
from agentkit import Agent, tool

@tool
def add(a: int, b: int) -> int:
    '''Add two integers.

    Args:
        a: The first number.
        b: The second number.
    '''
    return a + b

result = Agent("local", tools=[add]).run_sync("What is 2 + 3?")
print(result.output)
```
"""

import typing

from agentkit.agent import (
    Agent,
    AgentRun,
    AgentSettings,
    GuardrailResult,
    Handoff,
    HandoffRecord,
    InputGuardrail,
    ModelResponse,
    OutputGuardrail,
    PendingCall,
    RunContext,
    RunHooks,
    RunResult,
    RunState,
    StopReason,
    ToolCallRecord,
    ToolGuardrail,
    ToolResults,
    Verdict,
    drop_tool_traffic,
    handoff,
    keep_last,
)
from agentkit.agent.events import (
    Event,
    HandedOff,
    PartialOutput,
    RunFinished,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from agentkit.errors import (
    AgentKitError,
    ApprovalRequired,
    AuthError,
    BadRequest,
    ConfigurationError,
    DeadlineExceeded,
    FieldError,
    GuardrailTripped,
    MaxStepsExceeded,
    ModelBehaviorError,
    ModelConnectionError,
    ModelHTTPError,
    ModelTimeout,
    NotFound,
    OutputValidationError,
    RateLimited,
    RepeatedToolCall,
    RequestValidationError,
    RunError,
    RunInterrupted,
    RunStateError,
    RunStopped,
    SchemaGrammarError,
    ServerError,
    StopRun,
    StreamInterrupted,
    ToolArgumentsError,
    ToolDefinitionError,
    ToolRetriesExhausted,
    ToolRetry,
    TransportError,
    TruncatedToolCall,
    UnsupportedFeature,
    UserError,
)
from agentkit.model_api import (
    FunctionDefinition,
    Generation,
    Message,
    ModelRequest,
    StreamChunk,
    ToolCall,
    Usage,
)
from agentkit.runtimes import (
    Cached,
    CacheStore,
    Capabilities,
    Fallback,
    FunctionRuntime,
    MemoryCacheStore,
    OpenAICompatible,
    Profile,
    RateLimit,
    RetryPolicy,
    Runtime,
    ScriptedRuntime,
    SQLiteCacheStore,
    WorkersAI,
    get_runtime,
)
from agentkit.sessions import HistoryLimit, MemorySession, Session, SQLiteSession
from agentkit.tools import (
    Tool,
    ToolDefinitionWarning,
    Toolset,
    ToolSource,
    ValidatedArguments,
    tool,
    validate_tool_definitions,
)
from agentkit.tools.context import Decision
from agentkit.usage import ModelPrice, PriceTable

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentKitError",
    "AgentRun",
    "AgentSettings",
    "ApprovalRequired",
    "AuthError",
    "BadRequest",
    "CacheStore",
    "Cached",
    "Capabilities",
    "ConfigurationError",
    "DeadlineExceeded",
    "Decision",
    "Event",
    "Fallback",
    "FieldError",
    "FunctionDefinition",
    "FunctionRuntime",
    "Generation",
    "GuardrailResult",
    "GuardrailTripped",
    "HandedOff",
    "Handoff",
    "HandoffRecord",
    "HistoryLimit",
    "InputGuardrail",
    "MaxStepsExceeded",
    "MemoryCacheStore",
    "MemorySession",
    "Message",
    "ModelBehaviorError",
    "ModelConnectionError",
    "ModelHTTPError",
    "ModelPrice",
    "ModelRequest",
    "ModelResponse",
    "ModelTimeout",
    "NotFound",
    "OpenAICompatible",
    "OutputGuardrail",
    "OutputValidationError",
    "PartialOutput",
    "PendingCall",
    "PriceTable",
    "Profile",
    "RateLimit",
    "RateLimited",
    "RepeatedToolCall",
    "RequestValidationError",
    "RetryPolicy",
    "RunContext",
    "RunError",
    "RunFinished",
    "RunHooks",
    "RunInterrupted",
    "RunResult",
    "RunState",
    "RunStateError",
    "RunStopped",
    "Runtime",
    "SQLiteCacheStore",
    "SQLiteSession",
    "SchemaGrammarError",
    "ScriptedRuntime",
    "ServerError",
    "Session",
    "StepFinished",
    "StepStarted",
    "StopReason",
    "StopRun",
    "StreamChunk",
    "StreamInterrupted",
    "TextDelta",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallFinished",
    "ToolCallRecord",
    "ToolCallStarted",
    "ToolDefinitionError",
    "ToolDefinitionWarning",
    "ToolGuardrail",
    "ToolResults",
    "ToolRetriesExhausted",
    "ToolRetry",
    "ToolSource",
    "Toolset",
    "TransportError",
    "TruncatedToolCall",
    "UnsupportedFeature",
    "Usage",
    "UserError",
    "ValidatedArguments",
    "Verdict",
    "WorkersAI",
    "__version__",
    "drop_tool_traffic",
    "get_runtime",
    "handoff",
    "keep_last",
    "tool",
    "validate_tool_definitions",
]

# Names that moved, still importable from here for a while; a type checker sees them as before.
_MOVED = {
    "GenerationRequest": "agentkit.wire",
    "NoRecording": "agentkit.testing",
    "RecordingTransport": "agentkit.testing",
}
if typing.TYPE_CHECKING:
    from agentkit.testing import NoRecording as NoRecording
    from agentkit.testing import RecordingTransport as RecordingTransport
    from agentkit.wire import GenerationRequest as GenerationRequest
else:

    def __getattr__(name: str) -> object:
        if name not in _MOVED:
            raise AttributeError(f"module 'agentkit' has no attribute {name!r}")
        import importlib
        import warnings

        warnings.warn(
            f"agentkit.{name} has moved: import it from {_MOVED[name]}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
