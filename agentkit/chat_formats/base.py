"""`ChatFormat`: what a local model's prompt looks like, and how its tool calls are written."""

from __future__ import annotations

import abc
import datetime
import functools
import json
from collections.abc import Sequence
from typing import Any

from agentkit.chat_formats.calls import CallBounds, Wrapping, call_engine_grammar, check_call_schema
from agentkit.chat_formats.engine import EngineGrammar
from agentkit.chat_formats.parsing import parse_tool_calls
from agentkit.errors import UserError
from agentkit.model_api import FunctionDefinition, Message, ToolCall

__all__ = ["MAX_ITEMS", "MAX_PARALLEL_CALLS", "MAX_STRING", "ChatFormat"]

MAX_PARALLEL_CALLS = 8
"""The most calls one grammar-held turn may hold: a small model can otherwise loop on calls."""
MAX_STRING = 256
"""Characters a string argument without its own `maxLength` may hold in a grammar-held call."""
MAX_ITEMS = 32
"""Items an array argument without its own `maxItems` may hold in a grammar-held call."""
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class ChatFormat(abc.ABC):
    """Renders messages and tools into one prompt text, and reads tool calls back out."""

    name: str
    """`llama3` or `chatml`."""
    stop: tuple[str, ...]
    """Stop strings: the end of the assistant's turn."""
    call_trigger: str
    """The text a tool call starts with in the model's output."""
    arguments_key: str
    """The key of a call's arguments: `parameters` (Llama 3.1) or `arguments`."""
    call_separator: str
    """What stands between two calls of one turn."""

    @abc.abstractmethod
    def render(
        self,
        messages: Sequence[Message],
        tools: Sequence[FunctionDefinition] = (),
        *,
        tool_choice: str = "auto",
        today: datetime.date | None = None,
    ) -> str:
        """The whole prompt text, ending with the assistant header, ready to generate.

        Args:
            messages: The conversation.
            tools: The tools the model may call (not shown when `tool_choice` is `none`).
            tool_choice: `auto`, `required`, `none`, or one tool's name.
            today: The date the prompt states, where the format has one (default: today).
        """

    def wrap_call(self, call_json: str) -> str:
        """One call as the format writes it, around the call's JSON."""
        return call_json

    def call_text(self, calls: Sequence[ToolCall]) -> str:
        """The calls of one assistant turn, exactly as the call grammar writes them."""
        return self.call_separator.join(self.wrap_call(self._call_json(c)) for c in calls)

    def call_grammar(
        self,
        tools: Sequence[FunctionDefinition],
        tool_choice: str = "auto",
        *,
        parallel: bool = True,
        checked_after: bool = True,
        max_string: int | None = MAX_STRING,
        max_items: int | None = MAX_ITEMS,
    ) -> EngineGrammar:
        """The grammar engine's grammar of one tool call (several when `parallel`), from
        `call_trigger` on (`agentkit.chat_formats.calls`).

        Args:
            tools: The tools; their parameter schemas are normalized first (BFCL's `dict`,
                `float`, ... become standard types).
            tool_choice: `auto` or `required` (any tool), or one tool's name (only that one).
            parallel: Allow up to `MAX_PARALLEL_CALLS` calls, separated as the format does.
            checked_after: Leave keywords the engine does not implement (`not`,
                `if`/`then`/`else`, ...) to the tool's validator, which checks every call
                before it runs; with `False` they raise `SchemaGrammarError`.
            max_string: The most characters a string without its own `maxLength` may hold. A
                small model sometimes never closes a quote; the bound makes it, long before
                `max_tokens` would cut the call in half. None: no bound.
            max_items: The same for the items of an array without its own `maxItems`.

        Raises:
            UserError: no tools, `tool_choice` `none`, or a name that is not a tool's.
            SchemaGrammarError: a parameters schema the grammar cannot hold.
        """
        bounds = CallBounds(
            max_calls=MAX_PARALLEL_CALLS if parallel else 1,
            max_string=max_string,
            max_items=max_items,
            checked_after=checked_after,
        )
        return call_engine_grammar(_chosen(tools, tool_choice), self.wrapping, bounds)

    @property
    def wrapping(self) -> Wrapping:
        """How this format writes the calls of one turn, for the call grammars."""
        before, after = self.wrap_call("\0").split("\0")
        return Wrapping(self.arguments_key, before, after, self.call_separator)

    def check_tools(self, tools: Sequence[FunctionDefinition]) -> None:
        """Compile each tool's parameters now, so a schema the grammar cannot hold fails before
        any request, naming the tool and the path. A schema checked once is not compiled again.

        Raises:
            SchemaGrammarError: the first tool whose parameters the grammar cannot hold.
        """
        for tool in tools:
            try:
                key = json.dumps(tool.parameters, sort_keys=True)
            except (TypeError, ValueError, RecursionError):  # not plain JSON: checked uncached
                check_call_schema(tool.name, tool.parameters)
            else:
                _checked_schema(tool.name, key)

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """Split model output into (the answer text without the calls, the calls)."""
        return parse_tool_calls(text)

    def _call_json(self, call: ToolCall) -> str:
        arguments: Any = call.arguments
        if call.raw_arguments is not None:
            arguments = call.raw_arguments  # kept as the model wrote it
        return json.dumps({"name": call.name, self.arguments_key: arguments}, ensure_ascii=False)

    def __repr__(self) -> str:
        return f"<ChatFormat {self.name}>"


@functools.lru_cache(maxsize=1024)
def _checked_schema(name: str, parameters: str) -> None:
    check_call_schema(name, json.loads(parameters))


def _chosen(tools: Sequence[FunctionDefinition], tool_choice: str) -> list[FunctionDefinition]:
    if not tools:
        raise UserError("call_grammar: no tools given, so no call can be written")
    if tool_choice in ("auto", "required"):
        return list(tools)
    if tool_choice == "none":
        raise UserError("call_grammar: tool_choice 'none' allows no call")
    chosen = [t for t in tools if t.name == tool_choice]
    if not chosen:
        names = ", ".join(t.name for t in tools)
        raise UserError(f"tool_choice: {tool_choice!r} is not one of the tools ({names})")
    return chosen


def shown_tools(tools: Sequence[FunctionDefinition], tool_choice: str) -> list[FunctionDefinition]:
    """The tools a prompt lists: none for `tool_choice="none"`.

    `required` and a tool's name change nothing in the prompt: the grammar holds them. So a run
    that forces its first call and then goes back to `auto` keeps one prompt prefix, and the
    runtime's KV cache serves it.
    """
    return [] if tool_choice == "none" else list(tools)


def date_line(today: datetime.date | None) -> str:
    """`26 Jul 2024` (the `%d %b %Y` of the C locale, whatever the locale is)."""
    day = today or datetime.date.today()
    return f"{day.day:02d} {_MONTHS[day.month - 1]} {day.year}"
