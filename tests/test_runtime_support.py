"""Nothing is silently ignored: every runtime, every request field, honoured or refused by name.

A hosted runtime honours a field when the field reaches the service (seen in the body it
sends); the test doubles when their recorded request holds it; the local runtime when the plan
it hands llama.cpp (prompt, sampling, grammar, adapter) reflects it. A field a runtime does not
honour is refused with `UnsupportedFeature` naming the field and the runtime, before anything is
sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from agentkit import (
    FunctionDefinition,
    FunctionRuntime,
    Message,
    ModelRequest,
    OpenAICompatible,
    Runtime,
    ScriptedRuntime,
    UnsupportedFeature,
    WorkersAI,
)
from agentkit.model_api import SAMPLING_FIELDS

TOOL = FunctionDefinition(
    name="add",
    description="Add two integers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
SAMPLING_VALUES: dict[str, Any] = {
    "max_tokens": 17,
    "temperature": 0.25,
    "top_p": 0.5,
    "top_k": 7,
    "seed": 42,
    "repetition_penalty": 1.2,
    "frequency_penalty": 0.3,
    "presence_penalty": 0.4,
}
FIELDS: dict[str, dict[str, Any]] = {
    "tools": {"tools": [TOOL]},
    "tool_choice": {"tools": [TOOL], "tool_choice": "required"},
    "parallel_tool_calls": {"tools": [TOOL], "parallel_tool_calls": True},
    "response_format": {"response_format": {"type": "json_object"}},
    "lora": {"lora": "pirate"},
    "raw_prompt": {"raw_prompt": "<|im_start|>user\nhi<|im_end|>\n", "messages": []},
    **{name: {name: value} for name, value in SAMPLING_VALUES.items()},
}


def request_using(field: str) -> ModelRequest:
    return ModelRequest(**{"messages": [Message.user("What is 2 + 3?")], **FIELDS[field]})


def test_every_optional_field_is_walked() -> None:
    optional = set(ModelRequest.model_fields) - {"messages"}
    assert set(FIELDS) == optional
    assert set(SAMPLING_VALUES) == set(SAMPLING_FIELDS)


# -- hosted runtimes: what reaches the wire ----------------------------------------------------


def sent_body(field: str, body: dict[str, Any]) -> bool:
    """Does the body carry what `field` asked for (in the wire's own form)?"""
    value = FIELDS[field][field]
    if field == "tools":
        return len(body.get("tools", [])) == 1
    if field == "raw_prompt":
        return bool(body.get("prompt") == value and body.get("raw") is True)
    if field == "tool_choice":
        return bool(body.get("tool_choice") == value)
    return bool(body.get(field) == value)


HostedFactory = Callable[[httpx.AsyncClient], Runtime]
OK_RUN = {"success": True, "errors": [], "messages": [], "result": {"response": "5"}}
OK_CHAT = {"choices": [{"message": {"content": "5"}, "finish_reason": "stop"}]}
HOSTED: dict[str, tuple[HostedFactory, dict[str, Any]]] = {
    "workers-ai": (lambda client: WorkersAI("acc", "tok", client=client), OK_RUN),
    "workers-ai/openai": (
        lambda client: WorkersAI("acc", "tok", endpoint="openai", client=client),
        OK_CHAT,
    ),
    "openai": (
        lambda client: OpenAICompatible("http://127.0.0.1:9/v1", model="m", client=client),
        OK_CHAT,
    ),
}


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("kind", list(HOSTED))
async def test_hosted_runtimes_send_or_refuse_each_field(kind: str, field: str) -> None:
    make, answer = HOSTED[kind]
    bodies: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=answer)

    runtime = make(httpx.AsyncClient(transport=httpx.MockTransport(handle)))
    request = request_using(field)
    if runtime.capabilities.honours(field):
        await runtime.generate(request)
        assert sent_body(field, bodies[-1]), bodies[-1]
    else:
        with pytest.raises(UnsupportedFeature) as info:
            await runtime.generate(request)
        assert (info.value.feature, info.value.runtime) == (field, runtime.name)
        assert f"{field}: not supported by the {runtime.name} runtime" in str(info.value)
        assert bodies == []


def test_what_each_hosted_runtime_refuses() -> None:
    # One runtime each: a client each would build an SSL context each.
    runtimes = {kind: make(httpx.AsyncClient()) for kind, (make, _) in HOSTED.items()}
    refused = {
        kind: sorted(f for f in FIELDS if not runtime.capabilities.honours(f))
        for kind, runtime in runtimes.items()
    }
    assert refused == {
        "workers-ai": ["parallel_tool_calls", "tool_choice"],
        "workers-ai/openai": ["lora", "raw_prompt"],
        "openai": ["lora", "raw_prompt"],
    }


# -- the test doubles: what they record --------------------------------------------------------


@pytest.mark.parametrize("field", list(FIELDS))
async def test_the_test_doubles_record_every_field(field: str) -> None:
    request = request_using(field)
    scripted = ScriptedRuntime(["5"])
    function = FunctionRuntime(lambda request: "5")
    for runtime in (scripted, function):
        assert runtime.capabilities.honours(field)
        await runtime.generate(request)
        assert getattr(runtime.requests[-1], field) == FIELDS[field][field]


# -- the local runtime: the plan it hands llama.cpp --------------------------------------------


@pytest.mark.model
async def test_the_local_runtime_honours_or_refuses_each_field(tmp_path: Any) -> None:
    llama_cpp = pytest.importorskip("agentkit.runtimes.llama_cpp", reason="needs the local extra")
    adapter = tmp_path / "pirate.gguf"
    adapter.write_bytes(b"GGUF")  # registered only; the plan names it, nothing loads it
    runtime = llama_cpp.LlamaCpp(loras={"pirate": adapter})
    fmt = runtime.chat_format  # loads the model and its chat format
    refused = []
    for field in FIELDS:
        request = request_using(field)
        if not runtime.capabilities.honours(field):
            with pytest.raises(UnsupportedFeature, match=f"{field}: not supported by the local"):
                await runtime.generate(request)
            refused.append(field)
            continue
        plan = runtime._plan(runtime.check(request))
        base = runtime._plan(runtime.check(request_using("max_tokens")))
        if field == "tools":
            assert plan.lazy_grammar and plan.trigger == fmt.call_trigger
        elif field == "tool_choice":
            assert plan.grammar and not plan.lazy_grammar
        elif field == "parallel_tool_calls":
            assert (
                plan.lazy_grammar
                != runtime._plan(runtime.check(request_using("tools"))).lazy_grammar
            )
        elif field == "response_format":
            assert plan.answer and plan.grammar and not plan.chat_format
            assert "a JSON object" in plan.prompt
        elif field == "lora":
            assert plan.lora == "pirate"
        elif field == "raw_prompt":
            assert plan.prompt == FIELDS[field][field]
        elif field == "max_tokens":
            assert plan.max_tokens == 17
        elif field == "seed":
            assert plan.sampling.seed == 42
        else:
            assert plan.sampling != base.sampling, field
    assert refused == []
    await runtime.aclose()
