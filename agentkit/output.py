"""Structured answers; kept as an import path of `agentkit.agent.output`."""

from agentkit.agent.output import WRAPPER_KEY, OutputErrors, OutputSpec, output_spec

__all__ = ["WRAPPER_KEY", "OutputErrors", "OutputSpec", "output_spec"]
