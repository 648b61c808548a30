"""`RuntimeWrapper`: the base of a runtime around another, which is that runtime to whoever uses
it: its name, capabilities, profile and slots, and its checks of tools and answer formats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentkit.model_api import FunctionDefinition
from agentkit.runtimes.base import Runtime

__all__ = ["RuntimeWrapper"]


class RuntimeWrapper(Runtime):
    """A runtime that hands its requests to `runtime`, adding something on the way (a cache, a
    queue...). Subclasses implement `handle_stream` (and maybe `handle_generate`) in terms of
    `self.runtime`, and say in `aclose` whether they close it.

    Args:
        runtime: the runtime wrapped.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        """The runtime wrapped."""
        self.name = runtime.name
        self.capabilities = runtime.capabilities
        self.profile = runtime.profile
        self.slots = runtime.slots

    def check_tools(self, tools: Sequence[FunctionDefinition]) -> None:
        self.runtime.check_tools(tools)

    def check_response_format(
        self,
        response_format: Mapping[str, Any],
        *,
        validated: bool = True,
        with_calls: bool = False,
    ) -> None:
        self.runtime.check_response_format(
            response_format, validated=validated, with_calls=with_calls
        )
