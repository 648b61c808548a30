"""Pausing a run for a person's approval; kept as an import path of `agentkit.agent.approval`."""

from agentkit.agent.approval import Decisions, check_decisions, denial, fingerprint, release

__all__ = ["Decisions", "check_decisions", "denial", "fingerprint", "release"]
