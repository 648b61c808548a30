"""What an AG-UI request brings to a run: the run input checked, its conversation as agentkit
messages, and the tools its front end offers as tools that never run on the server.

A front end's tool becomes a `Tool` whose every call waits for approval: the approval gate of
the tool step (`agentkit.agent.approval`) holds it back, the step's other calls run, and the
run stops with the front end's calls pending and a transcript a model accepts. The front end
runs them and sends the results in its next request, whose conversation the run continues.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from ag_ui.core import (
    AssistantMessage,
    DeveloperMessage,
    RunAgentInput,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from pydantic import ValidationError

from agentkit.errors import FieldError, RequestValidationError, ToolDefinitionError, UserError
from agentkit.model_api import FunctionDefinition, Message, SchemaDialect, ToolCall
from agentkit.runtimes.base import Runtime
from agentkit.tools import Tool, Toolset

__all__ = ["ClientToolset", "client_tools", "conversation", "parse_run_input"]

_WHAT = "AG-UI run input"
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def parse_run_input(body: Mapping[str, Any]) -> RunAgentInput:
    """`body` as a `RunAgentInput`.

    Raises:
        RequestValidationError: naming every failing field as the wire spells it
            (`threadId`, `messages[0].content`), with the value given.
    """
    try:
        return RunAgentInput.model_validate(body)
    except ValidationError as exc:
        # A value that fits no member of a union fails once per member: one line per field.
        found: dict[str, list[str]] = {}
        shown: dict[str, str] = {}
        for error in exc.errors():
            path = _path(body, error["loc"])
            found.setdefault(path, []).append(error["msg"])
            if error["type"] != "missing":
                text = repr(error["input"])
                shown[path] = f" (got {text[:80]}{'...' if len(text) > 80 else ''})"
        errors = [
            FieldError(path, "; or ".join(dict.fromkeys(why)) + shown.get(path, ""))
            for path, why in found.items()
        ]
        raise RequestValidationError(errors, _WHAT) from None


def _path(body: Mapping[str, Any], loc: Sequence[int | str]) -> str:
    """A pydantic error's location as the body spells it: `messages[0].content`, leaving out
    the union members pydantic names (a message's role, `str`, `list[...]`)."""
    path = ""
    here: Any = body
    tagged: Any = None  # the object whose union tag was passed over (once: a field may share it)
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            here = here[part] if isinstance(here, list) and part < len(here) else None
        elif isinstance(here, Mapping) and part in here:
            path += f".{part}" if path else part
            here = here[part]
        elif isinstance(here, Mapping) and part in here.values() and tagged is not here:
            tagged = here
        elif not path or isinstance(here, Mapping):
            path += f".{part}" if path else part  # a missing field
            here = None
    return path


def _bad(path: str, message: str) -> RequestValidationError:
    return RequestValidationError([FieldError(path, message)], _WHAT)


def conversation(run_input: RunAgentInput) -> list[Message]:
    """The request's messages as a transcript; a tool result takes its tool's name from the
    assistant message that made the call. Activity and reasoning messages are the front end's
    own display and are left out.

    Raises:
        RequestValidationError: a part other than text, a tool result answering no earlier
            call, too long a text, or a conversation that does not end with a user message or
            a tool result (there is nothing to answer).
    """
    names: dict[str, str] = {}
    out: list[Message] = []
    for i, message in enumerate(run_input.messages):
        where = f"messages[{i}]"
        try:
            if isinstance(message, (SystemMessage, DeveloperMessage)):
                out.append(Message.system(message.content))
            elif isinstance(message, UserMessage):
                out.append(Message.user(_text(message.content, where)))
            elif isinstance(message, AssistantMessage):
                calls = [
                    ToolCall.model_validate(
                        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                    )
                    for c in message.tool_calls or []
                ]
                names.update((call.id, call.name) for call in calls)
                out.append(Message.assistant(message.content or "", calls))
            elif isinstance(message, ToolMessage):
                name = names.get(message.tool_call_id)
                if name is None:
                    raise _bad(
                        f"{where}.toolCallId",
                        "answers no tool call of an earlier assistant message "
                        f"(got {message.tool_call_id!r})",
                    )
                content = _text(message.content, where)
                out.append(Message.tool(content, tool_call_id=message.tool_call_id, name=name))
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    FieldError(f"{where}.{'.'.join(map(str, e['loc']))}", e["msg"])
                    for e in exc.errors()
                ],
                _WHAT,
            ) from None
    if not out or out[-1].role not in ("user", "tool"):
        last = out[-1].role if out else "none"
        raise _bad("messages", f"must end with a user message or a tool result (got {last})")
    return out


def _text(content: str | Sequence[Any], where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, TextPart):
            kind = getattr(part, "type", type(part).__name__)
            raise _bad(f"{where}.content[{j}]", f"only text parts are supported (got {kind!r})")
        texts.append(part.text)
    return "".join(texts)


def _in_the_front_end(**arguments: Any) -> Any:
    # Never called: every call of a front end's tool is held by the approval gate.
    raise RuntimeError("this tool runs in the front end")


def client_tools(run_input: RunAgentInput, own: Toolset, runtime: Runtime) -> list[Tool]:
    """The front end's tools, as tools whose every call stops the run to be made by it.

    Raises:
        RequestValidationError: a definition that cannot be a tool, a name the agent's own
            tools (or another of the front end's) already have, or a tool the runtime cannot
            offer its model.
    """
    made: list[Tool] = []
    for i, offered in enumerate(run_input.tools or []):
        definition = {
            "name": offered.name,
            "description": offered.description,
            "parameters": offered.parameters or _NO_PARAMETERS,
        }
        try:
            tool = Tool.from_definition(definition, _in_the_front_end, requires_approval=True)
        except ToolDefinitionError as exc:
            raise _bad(f"tools[{i}]", str(exc)) from None
        if tool.name in own or any(t.name == tool.name for t in made):
            whose = "the agent's own tools" if tool.name in own else "another tool offered"
            raise _bad(f"tools[{i}].name", f"{offered.name!r} is the name of {whose}")
        made.append(tool)
    try:
        runtime.check_tools([t.definition(runtime.capabilities.schema_dialect) for t in made])
    except UserError as exc:
        raise _bad("tools", str(exc)) from None
    return made


class ClientToolset(Toolset):
    """An agent's toolset with a front end's tools after its own, for one run: the agent's
    toolset is shared by its runs and stays as it is."""

    def __init__(self, base: Toolset, tools: Iterable[Tool]) -> None:
        super().__init__()
        self.base = base
        """The agent's own toolset."""
        self.client = {t.name: t for t in tools}
        """The front end's tools, by name."""
        self._client_definitions: dict[str, list[FunctionDefinition]] = {}

    @property
    def sources(self) -> list[Any]:
        return self.base.sources

    @property
    def running(self) -> bool:
        return self.base.running

    def get(self, name: str) -> Tool | None:
        return self.base.get(name) or self.client.get(name)

    def definitions(self, dialect: SchemaDialect = "full") -> list[FunctionDefinition]:
        own = self._client_definitions.get(dialect)
        if own is None:
            own = self._client_definitions[dialect] = [
                t.definition(dialect) for t in self.client.values()
            ]
        return [*self.base.definitions(dialect), *own]

    def __iter__(self) -> Iterator[Tool]:
        yield from self.base
        yield from self.client.values()

    async def __aenter__(self) -> ClientToolset:
        await self.base.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.base.__aexit__(exc_type, exc, traceback)
