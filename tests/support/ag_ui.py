"""What the AG-UI tests share: a front end's request, reading a stream over HTTP with the
protocol package's own types, its sequencing rules, and the conversation a front end keeps."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from ag_ui.core import Event
from pydantic import TypeAdapter

from agentkit import Agent
from agentkit.server.background import BackgroundServer

EVENTS: TypeAdapter[Any] = TypeAdapter(Event)

ASK_USER = {
    "name": "ask_user",
    "description": "Ask the person at the screen a yes/no question.",
    "parameters": {
        "type": "object",
        "properties": {"question": {"type": "string", "description": "The question."}},
        "required": ["question"],
    },
}


def run_input(*messages: dict[str, Any], tools: Sequence[Any] = (), **more: Any) -> dict[str, Any]:
    """A RunAgentInput as a front end sends it (camelCase, every field)."""
    return {
        "threadId": "thread-1",
        "runId": more.pop("runId", "run-1"),
        "messages": list(messages),
        "tools": list(tools),
        "state": {},
        "context": [],
        "forwardedProps": {},
        **more,
    }


def user(text: str, id: str = "u1") -> dict[str, Any]:
    return {"id": id, "role": "user", "content": text}


def stream(server: BackgroundServer, body: dict[str, Any]) -> list[Any]:
    """POST `body` to the server's /ag-ui; each event, validated by the package's own types
    (no field they do not define), in order."""
    headers = {"Accept": "text/event-stream"}
    with httpx.stream(
        "POST", f"{server.url}/ag-ui", json=body, headers=headers, timeout=30
    ) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = answer.read().decode()
    events = []
    for block in text.strip().split("\n\n"):
        assert block.startswith("data: "), block  # one `data:` line per event, no names
        event = EVENTS.validate_python(json.loads(block.removeprefix("data: ")))
        assert not event.model_extra, event
        events.append(event)
    return events


def said(events: list[Any]) -> str:
    """The text of the events' text messages."""
    return "".join(e.delta for e in events if e.type.value == "TEXT_MESSAGE_CONTENT")


def check_order(events: list[Any], earlier: Sequence[str] = ()) -> None:
    """The protocol's sequencing rules: the run's first and last events; text messages opened,
    filled and closed one at a time; each tool call's start, args and end together, before
    its result (or made in an `earlier` run); step events paired."""
    kinds = [e.type.value for e in events]
    assert kinds[0] == "RUN_STARTED"
    assert kinds[-1] in ("RUN_FINISHED", "RUN_ERROR")
    assert kinds.count("RUN_STARTED") == 1 and kinds.count("RUN_FINISHED") <= 1
    open_text: str | None = None
    calls = dict.fromkeys(earlier, "TOOL_CALL_END")  # tool call id -> its last event
    steps: list[str] = []
    for event in events[1:-1]:
        kind = event.type.value
        assert kind not in ("RUN_STARTED", "RUN_FINISHED", "RUN_ERROR"), kinds
        if kind == "TEXT_MESSAGE_START":
            assert open_text is None, kinds
            open_text = event.message_id
        elif kind in ("TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END"):
            assert event.message_id == open_text, kinds
            if kind == "TEXT_MESSAGE_END":
                open_text = None
        else:
            assert open_text is None, f"{kind} inside a text message: {kinds}"
        if kind == "TOOL_CALL_START":
            assert event.tool_call_id not in calls
            calls[event.tool_call_id] = kind
        elif kind in ("TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT"):
            before = {"TOOL_CALL_ARGS": "TOOL_CALL_START", "TOOL_CALL_END": "TOOL_CALL_ARGS"}
            assert calls[event.tool_call_id] == before.get(kind, "TOOL_CALL_END"), kinds
            calls[event.tool_call_id] = kind
        if kind == "STEP_STARTED":
            steps.append(event.step_name)
        elif kind == "STEP_FINISHED":
            assert steps.pop() == event.step_name
    assert open_text is None and not steps
    assert all(last in ("TOOL_CALL_END", "TOOL_CALL_RESULT") for last in calls.values())


def client_messages(earlier: list[dict[str, Any]], events: list[Any]) -> list[dict[str, Any]]:
    """The conversation as a front end keeps it: `earlier`, then what the events built (an
    assistant message per message id, holding its text and tool calls; a tool message per
    result)."""
    messages = list(earlier)
    by_id: dict[str, dict[str, Any]] = {}
    calls: dict[str, dict[str, Any]] = {}

    def assistant(message_id: str) -> dict[str, Any]:
        if message_id not in by_id:
            by_id[message_id] = {"id": message_id, "role": "assistant", "content": ""}
            messages.append(by_id[message_id])
        return by_id[message_id]

    for event in events:
        kind = event.type.value
        if kind == "TEXT_MESSAGE_START":
            assistant(event.message_id)
        elif kind == "TEXT_MESSAGE_CONTENT":
            by_id[event.message_id]["content"] += event.delta
        elif kind == "TOOL_CALL_START":
            call = {"id": event.tool_call_id, "type": "function"}
            call["function"] = {"name": event.tool_call_name, "arguments": ""}
            assistant(event.parent_message_id).setdefault("toolCalls", []).append(call)
            calls[event.tool_call_id] = call
        elif kind == "TOOL_CALL_ARGS":
            calls[event.tool_call_id]["function"]["arguments"] += event.delta
        elif kind == "TOOL_CALL_RESULT":
            messages.append(
                {
                    "id": event.message_id,
                    "role": "tool",
                    "toolCallId": event.tool_call_id,
                    "content": event.content,
                }
            )
    return messages


def served(serve: Callable[..., BackgroundServer], agent: Agent[Any], **options: Any) -> Any:
    return serve(agent.runtime, agent=agent, **options)
