"""ChatML (SmolLM2, Qwen, Hermes): `<|im_start|>role ... <|im_end|>` turns.

SmolLM2's own template knows no tools, so the tool instructions are written into the system
message, Hermes-style: a call is `<tool_call>\\n{"name": f, "arguments": {...}}\\n</tool_call>`.
Tool results go back as a user turn holding one `<tool_response>` block per result, in the
order of the calls (consecutive results share one turn). A format made with a default system
prompt (SmolLM's own, for SmolLM models) uses it only when the conversation has no system
message; other ChatML models get no system turn they were not given.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence

from agentkit.chat_formats.base import ChatFormat, shown_tools
from agentkit.model_api import FunctionDefinition, Message

__all__ = ["DEFAULT_SYSTEM_PROMPT", "ChatMLFormat"]

DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""SmolLM2's system prompt, used for SmolLM models when the conversation has no system message."""

_INSTRUCTIONS = """\
To use a tool, reply with only this:
<tool_call>
{"name": "tool name", "arguments": {"argument name": "value"}}
</tool_call>
Use a tool when the user asks for something a tool does. After a <tool_response>, answer the \
user in plain words from it and do not call the tool again."""


class ChatMLFormat(ChatFormat):
    """ChatML models; the embedded SmolLM2-135M-Instruct among them.

    Args:
        system_prompt: The system message of a conversation that has none (None: no system
            turn unless there are tools to list).
    """

    name = "chatml"
    stop = ("<|im_end|>",)
    call_trigger = "<tool_call>"
    arguments_key = "arguments"
    call_separator = "\n"

    def __init__(self, system_prompt: str | None = None) -> None:
        self.system_prompt = system_prompt

    def wrap_call(self, call_json: str) -> str:
        return f"<tool_call>\n{call_json}\n</tool_call>"

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
        system = rest.pop(0).content if rest and rest[0].role == "system" else self.system_prompt
        if listed:
            lines = [json.dumps(t.to_wire("legacy"), ensure_ascii=False) for t in listed]
            tools_text = "You have these tools:\n" + "\n".join(lines) + "\n\n" + _INSTRUCTIONS
            system = f"{system}\n\n{tools_text}" if system is not None else tools_text
        out = [_turn("system", system)] if system is not None else []
        results: list[str] = []
        for message in rest:
            if message.role == "tool":
                results.append(f"<tool_response>\n{message.content}\n</tool_response>")
                continue
            if results:
                out.append(_turn("user", "\n".join(results)))
                results = []
            if message.role == "assistant" and message.tool_calls:
                calls = self.call_text(message.tool_calls)
                out.append(_turn("assistant", f"{message.content}\n{calls}".lstrip("\n")))
            else:
                out.append(_turn(message.role, message.content))
        if results:
            out.append(_turn("user", "\n".join(results)))
        out.append("<|im_start|>assistant\n")
        return "".join(out)


def _turn(role: str, content: str) -> str:
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"
