"""Structured answers on the hosted runtimes, over real HTTP on loopback: what goes on the wire
(Workers AI's `json_schema`, OpenAI's `{name, schema, strict}`), answers read back (a JSON-mode
object, a streamed object), and `agentkit run --output-schema`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from agentkit import Agent, OpenAICompatible, WorkersAI
from agentkit.cli import main
from agentkit.events import PartialOutput, RunFinished

from support.helpers import add
from support.loopback import LoopbackServer, Reply, sse

USAGE = {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26}


class City(BaseModel):
    name: str
    country: str
    population: int = Field(ge=0)


class Loose(BaseModel):
    name: str
    note: str | None = None  # may be omitted: strict mode cannot say that


def envelope(result: dict[str, Any]) -> Reply:
    return Reply(json={"result": result, "success": True, "errors": [], "messages": []})


def completion(content: str | None, calls: list[dict[str, Any]] | None = None) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return Reply(json={"id": "c", "object": "chat.completion", "choices": [choice], "usage": USAGE})


def workers_ai(server: LoopbackServer) -> WorkersAI:
    return WorkersAI("acc", "cf-token-123456", base_url=server.url + "/client/v4")


# -- Workers AI --------------------------------------------------------------------------------


async def test_workers_ai_gets_the_schema_and_its_object_answer_is_read(
    server: LoopbackServer,
) -> None:
    # In JSON mode the service may answer `response` as an object rather than a string.
    server.script(envelope({"response": {"name": "Lyon", "country": "FR", "population": 520000}}))
    async with workers_ai(server) as runtime:
        result = await Agent(runtime, output_type=City).run("Lyon, France: 520k people.")
    assert result.output == City(name="Lyon", country="FR", population=520000)
    sent = server.requests[0].json
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": City.model_json_schema(),
    }
    assert "JSON Schema" not in json.dumps(sent["messages"])  # enforced: not told


async def test_workers_ai_string_answer_invalid_then_fixed_with_tools_in_between(
    server: LoopbackServer,
) -> None:
    server.script(
        envelope(
            {"response": None, "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}
        ),
        envelope({"response": '{"name": "Lyon", "country": "FR", "population": -5}'}),
        envelope({"response": '{"name": "Lyon", "country": "FR", "population": 5}'}),
    )
    async with workers_ai(server) as runtime:
        agent = Agent(runtime, tools=[add], output_type=City)
        result = await agent.run("go")
    assert result.output.population == 5
    assert [r.call.name for r in result.tool_calls] == ["add"]
    third = server.requests[2].json
    assert third["messages"][-1]["role"] == "user"
    assert "population: must be >= 0 (got -5)" in third["messages"][-1]["content"]
    assert all(r.json["response_format"]["type"] == "json_schema" for r in server.requests)
    assert all(r.json["tools"] for r in server.requests)


async def test_workers_ai_streamed_object_gives_partial_values(server: LoopbackServer) -> None:
    pieces = ['{"name": "Ly', 'on", "coun', 'try": "FR", "popul', 'ation": 520', "000}"]
    server.script(Reply(sse=sse(*[{"response": p} for p in pieces], {"usage": USAGE})))
    async with workers_ai(server) as runtime:
        events = [e async for e in Agent(runtime, output_type=City).stream("go")]
    partials = [e.value for e in events if isinstance(e, PartialOutput)]
    assert partials == [
        {"name": "Ly"},
        {"name": "Lyon"},  # "coun...": a key without a value yet
        {"name": "Lyon", "country": "FR"},
        {"name": "Lyon", "country": "FR", "population": 520000},
    ]
    last = events[-1]
    assert isinstance(last, RunFinished) and last.result.output.population == 520000
    assert server.requests[0].json["response_format"]["type"] == "json_schema"


# -- OpenAI-compatible -------------------------------------------------------------------------


async def test_openai_gets_a_strict_schema_when_the_schema_allows_it(
    server: LoopbackServer,
) -> None:
    server.script(completion('{"name": "Lyon", "country": "FR", "population": 520000}'))
    async with OpenAICompatible(server.url + "/v1", model="m") as runtime:
        result = await Agent(runtime, output_type=City).run("go")
    assert result.output.name == "Lyon"
    fmt = server.requests[0].json["response_format"]
    assert fmt["type"] == "json_schema"
    assert (fmt["json_schema"]["name"], fmt["json_schema"]["strict"]) == ("City", True)
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["name", "country", "population"]


async def test_openai_strict_is_off_for_a_schema_it_would_change(server: LoopbackServer) -> None:
    server.script(completion('{"name": "Lyon"}'))
    async with OpenAICompatible(server.url + "/v1", model="m") as runtime:
        result = await Agent(runtime, output_type=Loose).run("go")
    assert result.output == Loose(name="Lyon")
    fmt = server.requests[0].json["response_format"]["json_schema"]
    assert fmt["strict"] is False
    assert fmt["schema"] == Loose.model_json_schema()


async def test_openai_wrapped_list_is_strict_and_unwrapped(server: LoopbackServer) -> None:
    server.script(completion('{"result": ["Lyon", "Nice"]}'))
    async with OpenAICompatible(server.url + "/v1", model="m") as runtime:
        result = await Agent(runtime, output_type=list[str]).run("two French cities")
    assert result.output == ["Lyon", "Nice"]
    fmt = server.requests[0].json["response_format"]["json_schema"]
    assert (fmt["name"], fmt["strict"]) == ("response", True)
    assert fmt["schema"]["properties"]["result"] == {"type": "array", "items": {"type": "string"}}


async def test_openai_invalid_beyond_retries_raises_with_the_partial_run(
    server: LoopbackServer,
) -> None:
    from agentkit import OutputValidationError

    server.script(completion("Lyon is in France."), completion('{"name": "Lyon"}'))
    async with OpenAICompatible(server.url + "/v1", model="m") as runtime:
        with pytest.raises(OutputValidationError) as caught:
            await Agent(runtime, output_type=City).run("go")
    assert [str(e) for e in caught.value.errors] == [
        "country: is required",
        "population: is required",
    ]
    assert caught.value.run is not None and caught.value.run.steps == 2
    assert len(server.requests) == 2


async def test_the_openai_endpoint_of_workers_ai_gets_the_openai_shape(
    server: LoopbackServer,
) -> None:
    server.script(completion('{"name": "Lyon", "country": "FR", "population": 520000}'))
    base = server.url + "/client/v4"
    async with WorkersAI("acc", "cf-token-123456", base_url=base, endpoint="openai") as runtime:
        result = await Agent(runtime, output_type=City).run("go")
    assert result.output.country == "FR"
    seen = server.requests[0]
    assert seen.path == "/client/v4/accounts/acc/ai/v1/chat/completions"
    fmt = seen.json["response_format"]["json_schema"]
    assert (fmt["name"], fmt["strict"]) == ("City", True)


# -- agentkit run --output-schema ------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
    "required": ["city", "celsius"],
}


@pytest.fixture
def openai_env(monkeypatch: pytest.MonkeyPatch, server: LoopbackServer) -> LoopbackServer:
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    return server


def test_cli_prints_the_object_from_an_inline_schema(
    openai_env: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    openai_env.script(completion('{"city": "Oslo", "celsius": -3.5}'))
    argv = ["run", "Oslo, -3.5 C", "--runtime", "openai", "--model", "m"]
    status = main([*argv, "--output-schema", json.dumps(SCHEMA)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out) == {"city": "Oslo", "celsius": -3.5}
    sent = openai_env.requests[0].json["response_format"]["json_schema"]
    assert sent["strict"] is True and sent["schema"]["properties"] == SCHEMA["properties"]


def test_cli_json_includes_the_object_from_a_schema_file(
    openai_env: LoopbackServer, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    path = tmp_path / "weather.json"
    path.write_text(json.dumps(SCHEMA))
    openai_env.script(completion('{"city": "Oslo", "celsius": -3.5}'))
    argv = ["run", "Oslo, -3.5 C", "--runtime", "openai", "--model", "m"]
    status = main([*argv, "--output-schema", str(path), "--json"])
    out, _ = capsys.readouterr()
    assert status == 0
    result = json.loads(out)
    assert result["output"] == {"city": "Oslo", "celsius": -3.5}
    assert result["text"] == '{"city": "Oslo", "celsius": -3.5}'


def test_cli_an_answer_that_never_fits_is_one_error_line(
    openai_env: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    openai_env.script(completion('{"city": "Oslo"}'), completion('{"city": "Oslo"}'))
    argv = ["run", "Oslo", "--runtime", "openai", "--model", "m"]
    status = main([*argv, "--output-schema", json.dumps(SCHEMA)])
    _, err = capsys.readouterr()
    assert status == 1
    assert err.startswith("error: the answer does not fit the output type after 1 retry: ")
    assert "after 1 retry: celsius: is required. It was: " in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "error: --output-schema: not JSON: Expecting property name"),
        ("no/such/schema.json", "error: --output-schema: cannot read no/such/schema.json"),
        ('{"type": 5}', "error: output_type: not a valid JSON Schema"),
    ],
)
def test_cli_a_bad_schema_is_one_clear_line(
    openai_env: LoopbackServer, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    status = main(["run", "x", "--runtime", "openai", "--model", "m", "--output-schema", value])
    _, err = capsys.readouterr()
    assert status == 2
    assert err.startswith(message), err
    assert not openai_env.requests
