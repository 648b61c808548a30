"""The `Session` protocol, history limits, and the conversation a session's entries make.

A session is an ordered log of JSON entries under one id. It knows nothing of messages: the
agent writes entries (see `agentkit.sessions.journal`) and reads the conversation back from
them, so a new storage is three small methods.

Entry kinds, each a JSON object with `kind` and `run` (the id of the run that wrote it):

- `run`: a run began, or was taken up again to continue it (`pid`, `host`, `claim`); after
  an `end`, it reopens the run;
- `message`: one message of the run's transcript (`message`; `usage` so far on model answers);
- `started`: tool calls about to run (`calls`: their ids), written before any of them starts;
- `end`: the run ended in its process, normally or with an error (`stop_reason`);
- `withdrawn`: a claim to continue the run that lost to an earlier one (`claim`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agentkit.errors import UserError
from agentkit.model_api import Message

__all__ = [
    "Entry",
    "HistoryLimit",
    "Session",
    "check_entries",
    "check_session_id",
    "estimate_tokens",
    "limit_history",
    "order_results",
]

Entry = dict[str, Any]
"""One journal entry: a JSON object with at least `kind` and `run`."""


@runtime_checkable
class Session(Protocol):
    """Where a conversation lives between runs: an ordered log of JSON entries under one id.

    Implementations must make each `append` atomic and contiguous (all of its entries or none,
    none of another writer's between them) and keep the order of appends; `load` returns every
    entry in that order. That is all the agent needs for history, journaling and recovery.
    """

    session_id: str
    """The conversation's name."""
    limit: HistoryLimit | None
    """How much of the history a new run sends to the model; None for all of it."""

    async def load(self) -> list[Entry]:
        """Every entry, oldest first."""
        ...

    async def append(self, entries: Sequence[Entry]) -> None:
        """Add entries at the end, atomically and together."""
        ...

    async def clear(self) -> None:
        """Forget every entry of this session."""
        ...


def check_session_id(session_id: str, field: str = "session_id") -> str:
    """`session_id` if a store can keep it: not empty, and text UTF-8 can encode (a name read
    from bytes in another encoding holds lone surrogates, which no file or database takes).

    Raises:
        UserError: naming `field` and the value.
    """
    if not session_id:
        raise UserError(f"{field}: must not be empty")
    try:
        session_id.encode()
    except UnicodeEncodeError:
        raise UserError(
            f"{field}: must be text UTF-8 can encode, without unpaired surrogates "
            f"(got {session_id!r})"
        ) from None
    return session_id


def check_entries(entries: Sequence[Entry]) -> list[str]:
    """The entries as JSON text, one each; refuses anything that is not a JSON object with a
    string `kind`."""
    texts = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("kind"), str):
            raise UserError(f"entries[{index}]: must be a JSON object with a string 'kind'")
        try:
            texts.append(json.dumps(entry, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise UserError(f"entries[{index}]: not JSON data ({exc})") from None
    return texts


def estimate_tokens(message: Message) -> int:
    """A rough token count: a token per 4 characters of content and tool calls, plus 4 for
    the message's framing. Good to within ~30% for English and JSON on Llama tokenizers."""
    size = len(message.content)
    for call in message.tool_calls:
        size += len(call.name) + len(call.arguments_json())
    return size // 4 + 4


@dataclass(frozen=True)
class HistoryLimit:
    """How much earlier conversation a run sends: the newest whole exchanges that fit.

    Args:
        max_messages: at most this many messages of history.
        max_tokens: at most this many tokens of history, counted by `count_tokens`.
        count_tokens: tokens of one message; `estimate_tokens` (characters / 4) by default,
            or a runtime's tokenizer wrapped in a function.

    An assistant message that calls tools and the results of those calls are kept or dropped
    together; the history never starts with a tool result, and starts with a user message when
    one is left. A system message at the head of the history is always kept, uncounted.
    """

    max_messages: int | None = None
    max_tokens: int | None = None
    count_tokens: Callable[[Message], int] = estimate_tokens

    def __post_init__(self) -> None:
        for name in ("max_messages", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"HistoryLimit.{name}: must be >= 1 (got {value})")


def _units(messages: Sequence[Message]) -> list[list[Message]]:
    """Messages grouped so that no group may be split: a tool-calling assistant message with
    the results that follow it, or one other message."""
    units: list[list[Message]] = []
    for message in messages:
        if message.role == "tool" and units and (units[-1][0].tool_calls):
            units[-1].append(message)
        else:
            units.append([message])
    return units


def limit_history(messages: Sequence[Message], limit: HistoryLimit | None) -> list[Message]:
    """The newest part of `messages` within `limit` (see `HistoryLimit`)."""
    head = [m for m in messages[:1] if m.role == "system"]
    units = _units(messages[len(head) :])
    kept: list[list[Message]] = []
    count = tokens = 0
    for unit in reversed(units):
        if limit is not None:
            if limit.max_messages is not None and count + len(unit) > limit.max_messages:
                break
            if limit.max_tokens is not None:
                size = sum(limit.count_tokens(m) for m in unit)
                if tokens + size > limit.max_tokens:
                    break
                tokens += size
        count += len(unit)
        kept.append(unit)
    kept.reverse()
    # Never open on a result whose call is gone; open on a user turn if any is left.
    while kept and kept[0][0].role == "tool":
        kept.pop(0)
    if any(unit[0].role == "user" for unit in kept):
        while kept[0][0].role != "user":
            kept.pop(0)
    return head + [m for unit in kept for m in unit]


def order_results(messages: Sequence[Message]) -> list[Message]:
    """Each tool-calling assistant message followed by its calls' results in the order of the
    calls (a journal holds them in the order they finished); results of no call are dropped,
    and a tool-calling message some of whose calls have no result is dropped with its results.
    """
    results: dict[str, Message] = {
        m.tool_call_id: m for m in messages if m.role == "tool" and m.tool_call_id
    }
    out: list[Message] = []
    for message in messages:
        if message.role == "tool":
            continue
        if message.tool_calls:
            answers = [results.get(call.id) for call in message.tool_calls]
            if any(answer is None for answer in answers):
                continue
            out.append(message)
            out.extend(answer for answer in answers if answer is not None)
        else:
            out.append(message)
    return out
