"""What a run produces; kept as an import path of `agentkit.agent.results`."""

from agentkit.agent.results import OutputT, PendingCall, RunResult, StopReason, ToolCallRecord

__all__ = ["OutputT", "PendingCall", "RunResult", "StopReason", "ToolCallRecord"]
