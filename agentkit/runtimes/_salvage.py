"""Tool calls a hosted model wrote into its text instead of the `tool_calls` field.

Some models behind Workers AI and OpenAI-compatible servers answer a call as text (`{"name":
...}`, `<tool_call>...`, `[f(x=1)]`). Both hosted runtimes salvage them with the local runtime's
call parser, so the Agent sees a call either way.
"""

from __future__ import annotations

from collections.abc import Collection

from agentkit.chat_formats import parse_tool_calls
from agentkit.model_api import ToolCall
from agentkit.wire._ids import stable_call_id

__all__ = ["LeakGuard", "salvage_tool_calls"]


def salvage_tool_calls(
    text: str, tool_names: Collection[str], seed: str = ""
) -> tuple[str, list[ToolCall]]:
    """Tool calls a model wrote into its text instead of the `tool_calls` field.

    Only calls that all name offered tools count: an answer that merely shows some JSON stays
    an answer. Returns the text without the calls, and the calls (none: the text unchanged),
    with ids made from `seed`, the text and their position.
    """
    if not tool_names or not text.strip():
        return text, []
    rest, calls = parse_tool_calls(text)
    if not calls or any(call.name not in tool_names for call in calls):
        return text, []
    ids = [stable_call_id(seed, text, str(n)) for n in range(len(calls))]
    return rest.strip(), [c.model_copy(update={"id": i}) for c, i in zip(calls, ids, strict=True)]


class LeakGuard:
    """Holds back streamed text that starts like a tool call, so a call written into the text
    is not shown to the caller as an answer before it can be salvaged."""

    _OPENERS = ("{", "[", "<", "`")

    def __init__(self, tool_names: Collection[str]) -> None:
        self._names = tool_names
        self.seed = ""
        """Mixed into the ids of salvaged calls (e.g. the response id)."""
        self._buffer = ""
        self._holding = bool(tool_names)  # undecided until the first visible character
        self._decided = not tool_names

    def text(self, delta: str) -> str:
        """What of `delta` may be shown now."""
        if self._decided and not self._holding:
            return delta
        self._buffer += delta
        if not self._decided:
            start = self._buffer.lstrip()
            if not start:
                return ""
            self._decided = True
            self._holding = start.startswith(self._OPENERS)
            if not self._holding:
                out, self._buffer = self._buffer, ""
                return out
        return ""

    def finish(self) -> tuple[str, list[ToolCall]]:
        """The text still held, and the calls salvaged from it."""
        held, self._buffer = self._buffer, ""
        if not held:
            return "", []
        return salvage_tool_calls(held, self._names, self.seed)
