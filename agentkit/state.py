"""A paused run as data; kept as an import path of `agentkit.agent.results`."""

from agentkit.agent.results import STATE_VERSION, RunState, digest

__all__ = ["STATE_VERSION", "RunState", "digest"]
