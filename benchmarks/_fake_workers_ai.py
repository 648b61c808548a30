"""A Workers-AI-shaped model server on 127.0.0.1 for W5, with a fixed latency per call.

`python -m benchmarks._fake_workers_ai PORT LATENCY_SECONDS`

It speaks both endpoints of the service: `/accounts/{id}/ai/run/{model}` (the Workers AI
envelope) and `/accounts/{id}/ai/v1/chat/completions` (its OpenAI-compatible one). The "model"
calls `add(2, 3)` until it is sent tool results, then answers with their sum.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

LATENCY = 0.02
USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


def _tool_results(messages: list[dict[str, Any]]) -> list[int] | None:
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(int(str(message.get("content")).strip()))
    return results or None


async def run(request: Request) -> JSONResponse:
    body = await request.json()
    await asyncio.sleep(LATENCY)
    results = _tool_results(body["messages"])
    if results:
        result: dict[str, Any] = {"response": str(sum(results)), "tool_calls": [], "usage": USAGE}
    else:
        call = {"name": "add", "arguments": {"a": 2, "b": 3}}
        result = {"response": "", "tool_calls": [call], "usage": USAGE}
    return JSONResponse({"result": result, "success": True, "errors": [], "messages": []})


async def chat_completions(request: Request) -> JSONResponse:
    body = await request.json()
    await asyncio.sleep(LATENCY)
    results = _tool_results(body["messages"])
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if results:
        message["content"] = str(sum(results))
        finish = "stop"
    else:
        message["tool_calls"] = [
            {
                "id": "call_" + uuid.uuid4().hex[:12],
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
            }
        ]
        finish = "tool_calls"
    return JSONResponse(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "@cf/meta/llama-3.1-8b-instruct"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": USAGE,
        }
    )


app = Starlette(
    routes=[
        Route("/accounts/{account}/ai/run/{model:path}", run, methods=["POST"]),
        Route("/accounts/{account}/ai/v1/chat/completions", chat_completions, methods=["POST"]),
    ]
)


def main() -> None:
    global LATENCY
    port, LATENCY = int(sys.argv[1]), float(sys.argv[2])
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=4096
    )


if __name__ == "__main__":
    main()
