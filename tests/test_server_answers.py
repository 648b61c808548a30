"""`response_format` through `agentkit serve`: the official `cloudflare` and `openai` SDKs get
schema-valid JSON from the embedded model, over HTTP on 127.0.0.1, whole and streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import cloudflare
import jsonschema
import openai
import pydantic
import pytest

from agentkit.model_api import DEFAULT_MODEL
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.server import create_app
from agentkit.server.background import BackgroundServer

from support.answer_schemas import ANSWER_SCHEMAS
from support.helpers import ACCOUNT, cloudflare_sdk, openai_sdk
from support.server import api_errors

pytestmark = pytest.mark.model

TOKEN = "answer-test-token"
PROMPT, SCHEMA = ANSWER_SCHEMAS["nested-object"]
# Plain JSON, as a user writes it for either SDK (whose TypedDicts for it differ).
MESSAGES: Any = [{"role": "user", "content": PROMPT}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name."}},
        "required": ["city"],
    },
}


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    age: int = pydantic.Field(ge=0, le=130)


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    model = LlamaCpp()
    with BackgroundServer(create_app(model, api_token=TOKEN)) as running:
        yield running
    anyio.run(model.aclose)


@pytest.fixture
def cf(server: BackgroundServer) -> cloudflare.Cloudflare:
    return cloudflare_sdk(server.url, TOKEN)


@pytest.fixture
def oa(server: BackgroundServer) -> openai.OpenAI:
    return openai_sdk(server.url, TOKEN)


# -- Workers AI: /ai/run ---------------------------------------------------------------------


def test_cloudflare_sdk_gets_a_schema_valid_answer(cf: cloudflare.Cloudflare) -> None:
    result: Any = cf.ai.run(
        DEFAULT_MODEL,
        account_id=ACCOUNT,
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": SCHEMA},
        max_tokens=80,
        temperature=0,
    )
    assert isinstance(result["response"], str)  # the SDK types it as text: JSON text it is
    jsonschema.validate(json.loads(result["response"]), SCHEMA)


def test_cloudflare_sdk_streams_the_object_as_it_grows(cf: cloudflare.Cloudflare) -> None:
    with cf.ai.with_streaming_response.run(
        DEFAULT_MODEL,
        account_id=ACCOUNT,
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": SCHEMA},
        stream=True,
        max_tokens=80,
        temperature=0.8,
        seed=7,
    ) as answer:
        data = [line[len("data: ") :] for line in answer.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    pieces = [json.loads(d)["response"] for d in data[:-1]]
    assert len([p for p in pieces if p]) > 3
    jsonschema.validate(json.loads("".join(pieces)), SCHEMA)


def test_cloudflare_sdk_json_object_mode(cf: cloudflare.Cloudflare) -> None:
    result: Any = cf.ai.run(
        DEFAULT_MODEL,
        account_id=ACCOUNT,
        prompt="Give the capital of France as JSON.",
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
    )
    assert isinstance(json.loads(result["response"]), dict)


def test_with_tools_the_answer_is_a_call_or_the_object(cf: cloudflare.Cloudflare) -> None:
    schema = ANSWER_SCHEMAS["flat-object"][1]
    for prompt in ("What is the weather in Paris? Use the tool.", "Alice is 31. Name and age?"):
        result: Any = cf.ai.run(
            DEFAULT_MODEL,
            account_id=ACCOUNT,
            messages=[{"role": "user", "content": prompt}],
            tools=[WEATHER],
            response_format={"type": "json_schema", "json_schema": schema},
            max_tokens=60,
            temperature=0,
        )
        if result.get("tool_calls"):
            [call] = result["tool_calls"]
            assert call["name"] == "get_weather" and isinstance(call["arguments"]["city"], str)
        else:
            jsonschema.validate(json.loads(result["response"]), schema)


@pytest.mark.parametrize("stream", [False, True])
def test_a_keyword_no_grammar_holds_is_refused_by_name_and_path(
    cf: cloudflare.Cloudflare, stream: bool
) -> None:
    # `pattern` and `format` are held; `not` is a keyword the grammar engine does not implement.
    schema = {"type": "object", "properties": {"code": {"type": "string", "not": {"const": "A"}}}}
    with pytest.raises(cloudflare.BadRequestError) as refused:
        cf.ai.run(
            DEFAULT_MODEL,
            account_id=ACCOUNT,
            prompt="Hi",
            response_format={"type": "json_schema", "json_schema": schema},
            stream=stream,
        )
    [error] = api_errors(refused.value)
    assert error["code"] == 5006
    assert "$.code: keyword 'not' cannot be held by a grammar" in error["message"]


def test_a_malformed_response_format_is_a_400(cf: cloudflare.Cloudflare) -> None:
    with pytest.raises(cloudflare.BadRequestError) as refused:
        cf.ai.run(
            DEFAULT_MODEL,
            account_id=ACCOUNT,
            prompt="Hi",
            response_format={"type": "json_schema", "json_schema": 5},
        )
    [error] = api_errors(refused.value)
    assert error["message"].startswith("Bad input: response_format.json_schema: must be")


# -- OpenAI: /v1/chat/completions ------------------------------------------------------------


def test_openai_sdk_json_schema_strict(oa: openai.OpenAI) -> None:
    completion = oa.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": SCHEMA, "strict": True},
        },
        max_tokens=80,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content or ""), SCHEMA)


def test_openai_sdk_parse_gives_the_pydantic_model(oa: openai.OpenAI) -> None:
    completion = oa.chat.completions.parse(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": "Alice is 31 years old. Name and age?"}],
        response_format=Person,
        max_tokens=40,
        temperature=0.8,
        seed=3,
    )
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person) and 0 <= person.age <= 130


def test_openai_sdk_streams_json_object_mode(oa: openai.OpenAI) -> None:
    stream = oa.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) > 2
    assert isinstance(json.loads("".join(pieces)), dict)


def test_openai_sdk_refusal_names_the_keyword(oa: openai.OpenAI) -> None:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"n": {"type": "integer", "not": {"multipleOf": 3}}},
    }
    with pytest.raises(openai.BadRequestError) as refused:
        oa.chat.completions.create(
            model=DEFAULT_MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        )
    assert "$.n: keyword 'not'" in str(refused.value)


def test_with_tools_under_auto_the_engine_holds_the_answer_as_it_does_alone(
    cf: cloudflare.Cloudflare,
) -> None:
    # A call or the answer is one grammar of the engine: `pattern` is held beside the calls;
    # `not`, which it does not implement, is refused before any token (nothing checks the
    # answer after the server).
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}
    answer: Any = cf.ai.run(
        DEFAULT_MODEL,
        account_id=ACCOUNT,
        messages=MESSAGES,
        tools=[WEATHER],
        response_format={"type": "json_schema", "json_schema": schema},
        max_tokens=40,
        temperature=0,
    )
    if not answer.get("tool_calls"):
        jsonschema.validate(json.loads(answer["response"]), schema)
    unheld = {"type": "object", "properties": {"code": {"type": "string", "not": {"const": "A"}}}}
    with pytest.raises(cloudflare.BadRequestError) as refused:
        cf.ai.run(
            DEFAULT_MODEL,
            account_id=ACCOUNT,
            messages=MESSAGES,
            tools=[WEATHER],
            response_format={"type": "json_schema", "json_schema": unheld},
        )
    [error] = api_errors(refused.value)
    assert error["code"] == 5006
    assert "'not'" in error["message"] and "$.code" in error["message"]
