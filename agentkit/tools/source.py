"""`ToolSource`: tools that exist only while a connection is open (an MCP server's).

A source goes in the same list as plain tools (`Agent(runtime, tools=[add, server])`). The
agent enters it with `async with` when it starts (or for each run, when the agent itself is
not entered) and leaves it when it stops; while it is open, `tools` says what it offers now,
and `version` changes whenever that list does, so the agent sends the new list at its next
step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from typing_extensions import Self

if TYPE_CHECKING:
    from agentkit.tools.tool import Tool

__all__ = ["ToolSource"]


class ToolSource(ABC):
    """Tools listed by something that has to be started and stopped.

    Subclasses open their connection in `start`, close it in `stop` (which must not raise),
    and keep `tools` and `version` current while open.
    """

    name: str
    """What the source is called in errors and logs."""

    @property
    @abstractmethod
    def tools(self) -> Mapping[str, Tool]:
        """The tools offered now, by the name the model sees.

        Raises:
            UserError: the source is not started.
        """

    @property
    @abstractmethod
    def version(self) -> int:
        """A number that changes whenever `tools` does."""

    @abstractmethod
    async def start(self) -> None:
        """Open the connection and list the tools.

        Raises:
            AgentKitError: the source could not be started; the message says why.
        """

    @abstractmethod
    async def stop(self) -> None:
        """Close the connection and release everything it holds (processes included)."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
