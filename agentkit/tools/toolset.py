"""`Toolset`: the tools of an agent by name, plain functions wrapped, tool sources followed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from agentkit.errors import ToolDefinitionError, UserError
from agentkit.model_api import FunctionDefinition, SchemaDialect
from agentkit.tools.source import ToolSource
from agentkit.tools.tool import Tool

__all__ = ["Toolset"]


class Toolset:
    """Tools by name; plain functions are wrapped with `@tool`; duplicate names are refused.

    `ToolSource`s (MCP servers) may be mixed in: their tools join the set while the toolset
    is entered (`async with toolset:`, which the agent does), and follow their changes.
    """

    def __init__(self, tools: Iterable[Tool | ToolSource | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._sources: list[ToolSource] = []
        self._definitions: dict[str, list[FunctionDefinition]] = {}
        self._versions: tuple[int, ...] = ()
        self._entered = 0
        self._stack: AsyncExitStack | None = None
        for item in tools:
            if isinstance(item, ToolSource):
                self.add_source(item)
            else:
                self.add(item)

    def add(self, item: Tool | Callable[..., Any]) -> Tool:
        """Add a tool (or a function, wrapped).

        Raises:
            ToolDefinitionError: a tool of that name is already there.
        """
        made = item if isinstance(item, Tool) else Tool.from_function(item)
        if made.name in self._tools:
            raise ToolDefinitionError(made.name, ["another tool already has this name"])
        self._tools[made.name] = made
        self._definitions.clear()
        return made

    def add_source(self, source: ToolSource) -> None:
        """Add a source of tools, started when the toolset is entered."""
        if self._entered:
            raise UserError(f"{source.name}: cannot add a tool source to a running toolset")
        self._sources.append(source)
        self._definitions.clear()

    @property
    def sources(self) -> list[ToolSource]:
        return list(self._sources)

    @property
    def running(self) -> bool:
        """Whether the sources are started (the toolset is entered)."""
        return self._entered > 0 and bool(self._sources)

    def get(self, name: str) -> Tool | None:
        found = self._tools.get(name)
        if found is None and self._entered:
            for source in self._sources:
                found = source.tools.get(name)
                if found is not None:
                    break
        return found

    @property
    def names(self) -> list[str]:
        return [t.name for t in self]

    def definitions(self, dialect: SchemaDialect = "full") -> list[FunctionDefinition]:
        """Every tool's definition in a dialect (built once per dialect, and again when a
        source's tools change).

        Raises:
            ToolDefinitionError: a source offers a tool whose name another tool has.
        """
        if self._sources:
            versions = tuple(s.version for s in self._sources) if self._entered else ()
            if versions != self._versions:
                self._definitions.clear()
                self._versions = versions
        found = self._definitions.get(dialect)
        if found is None:
            seen: set[str] = set()
            found = []
            for t in self:
                if t.name in seen:
                    raise ToolDefinitionError(t.name, ["another tool already has this name"])
                seen.add(t.name)
                found.append(t.definition(dialect))
            self._definitions[dialect] = found
        return found

    async def __aenter__(self) -> Toolset:
        """Start every source (once: nested entries only count)."""
        if self._entered == 0 and self._sources:
            async with AsyncExitStack() as stack:
                for source in self._sources:
                    await stack.enter_async_context(source)
                self._stack = stack.pop_all()
        self._entered += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._entered -= 1
        if self._entered == 0 and self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[Tool]:
        yield from self._tools.values()
        if self._entered:
            for source in self._sources:
                yield from source.tools.values()

    def __len__(self) -> int:
        return sum(1 for _ in self)
