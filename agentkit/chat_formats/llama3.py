"""Llama 3.1: header tokens, the `ipython` role for tool results, JSON calls.

Tools go into the system message (as llama.cpp does; the official template can also put them
into the first user message). Calls are written `{"name": f, "parameters": {...}}`, several
separated by `; `; every call of a turn is rendered, arguments encoded once, and a tool result
rendered as its text, never JSON-quoted again.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence

from agentkit.chat_formats.base import ChatFormat, date_line, shown_tools
from agentkit.model_api import FunctionDefinition, Message

__all__ = ["Llama3Format"]

_INSTRUCTIONS = (
    "You can call the functions below. To call one, answer with nothing but JSON of the form "
    '{"name": <function name>, "parameters": <dict of arguments>}. Use literal values, not '
    "variables. Once a function's result is in the conversation, answer the user from it."
)


class Llama3Format(ChatFormat):
    """Llama 3.1 (and 3.2/3.3) instruct models."""

    name = "llama3"
    stop = ("<|eot_id|>", "<|eom_id|>")
    call_trigger = '{"name"'
    arguments_key = "parameters"
    call_separator = "; "

    def render(
        self,
        messages: Sequence[Message],
        tools: Sequence[FunctionDefinition] = (),
        *,
        tool_choice: str = "auto",
        today: datetime.date | None = None,
    ) -> str:
        listed = shown_tools(tools, tool_choice)
        rest = list(messages)
        system = rest.pop(0).content if rest and rest[0].role == "system" else ""
        head = "Environment: ipython\n" if listed else ""
        head += f"Cutting Knowledge Date: December 2023\nToday Date: {date_line(today)}\n\n"
        if listed:
            head += _INSTRUCTIONS + "\n\n"
            head += "".join(json.dumps(t.to_wire("function"), indent=4) + "\n\n" for t in listed)
        out = ["<|begin_of_text|>", _turn("system", head + system)]
        for message in rest:
            if message.role == "tool":
                out.append(_turn("ipython", message.content))
            elif message.role == "assistant" and message.tool_calls:
                calls = self.call_text(message.tool_calls)
                out.append(_turn("assistant", f"{message.content}\n{calls}".lstrip("\n")))
            else:
                out.append(_turn(message.role, message.content))
        out.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
        return "".join(out)


def _turn(role: str, content: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"
