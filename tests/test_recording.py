"""Record real traffic once, replay it offline: agent runs, streams, broken streams, errors."""

from __future__ import annotations

import json
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest

from agentkit import Agent, RunResult, ServerError, StreamInterrupted
from agentkit.events import RunFinished, TextDelta
from agentkit.runtimes.openai import OpenAICompatible
from agentkit.runtimes.recording import NoRecording, RecordingTransport
from agentkit.runtimes.workers_ai import WorkersAI
from agentkit.wire import GenerationRequest

from support.helpers import add
from support.loopback import USAGE, LoopbackServer, Reply, Sleeps, sse

TOKEN = "real-token-that-must-not-leak"


BASE = "http://127.0.0.1:{port}/client/v4"


def workers(base: str, transport: httpx.AsyncBaseTransport, token: str = TOKEN) -> WorkersAI:
    client = httpx.AsyncClient(transport=transport)
    return WorkersAI("acc", token, base_url=base, client=client, sleep=Sleeps())


async def run(agent: Agent, stream: bool) -> tuple[RunResult, list[str]]:
    if not stream:
        return await agent.run("What is 2 + 3?"), []
    deltas: list[str] = []
    async with aclosing(agent.stream("What is 2 + 3?")) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                deltas.append(event.text)
            elif isinstance(event, RunFinished):
                result = event.result
    return result, deltas


@pytest.mark.parametrize("stream", [False, True])
async def test_an_agent_run_replays_offline_as_recorded(
    tmp_path: Path, service: LoopbackServer, stream: bool
) -> None:
    path = tmp_path / "run.json"
    base = service.url + "/client/v4"
    recorded, recorded_deltas = await run(
        Agent(workers(base, RecordingTransport.record(path)), tools=[add]), stream
    )
    assert len(service.requests) == 2

    # Offline: the service sees no further request.
    replayed, replayed_deltas = await run(
        Agent(workers(base, RecordingTransport.replay(path), "any-token"), tools=[add]), stream
    )
    assert len(service.requests) == 2
    assert replayed.output == recorded.output == "The result is 5."
    assert replayed.tool_calls[0].call.id == recorded.tool_calls[0].call.id
    assert replayed.usage == recorded.usage
    assert replayed_deltas == recorded_deltas
    if stream:
        assert len(replayed_deltas) == 4
    text = path.read_text()
    assert TOKEN not in text
    saved = json.loads(text)["interactions"]
    assert [i["request"]["method"] for i in saved] == ["POST", "POST"]
    assert saved[0]["request"]["json"]["messages"][-1]["content"] == "What is 2 + 3?"


async def test_secrets_echoed_back_are_redacted(tmp_path: Path, server: LoopbackServer) -> None:
    server.script(
        Reply(
            200,
            {"result": {"response": f"your token is {TOKEN}"}, "success": True},
            {"x-echo": TOKEN},
        )
    )
    path = tmp_path / "echo.json"
    runtime = workers(server.url, RecordingTransport.record(path))
    generation = await runtime.generate(GenerationRequest.build(prompt="echo"))
    assert TOKEN in generation.response  # the live answer is untouched
    text = path.read_text()
    assert TOKEN not in text
    saved = json.loads(text)["interactions"][0]["response"]
    assert saved["json"]["result"]["response"] == "your token is REDACTED"
    assert saved["headers"]["x-echo"] == "REDACTED"
    assert "authorization" not in text.lower()


async def test_a_broken_stream_replays_broken(tmp_path: Path, server: LoopbackServer) -> None:
    server.script(Reply(sse=sse({"response": "Half"}, done=False), cut=True))
    path = tmp_path / "cut.json"
    request = GenerationRequest.build(prompt="story")
    for mode in ("record", "replay"):
        runtime = workers(server.url, RecordingTransport(path, mode=mode))
        texts: list[str] = []
        with pytest.raises(StreamInterrupted):
            async for chunk in runtime.stream(request):
                texts.append(chunk.response)
        assert texts == ["Half"]
    assert len(server.requests) == 1
    assert "error" in json.loads(path.read_text())["interactions"][0]["response"]


async def test_identical_requests_replay_in_recorded_order(
    tmp_path: Path, server: LoopbackServer
) -> None:
    server.script(Reply(503, {"error": "busy"}), Reply(200, {"result": {"response": "ok"}}))
    path = tmp_path / "retry.json"
    request = GenerationRequest.build(prompt="hi")
    live = await workers(server.url, RecordingTransport.record(path)).generate(request)
    replayed = await workers(server.url, RecordingTransport.replay(path)).generate(request)
    assert live.response == replayed.response == "ok"
    statuses = [i["response"]["status"] for i in json.loads(path.read_text())["interactions"]]
    assert statuses == [503, 200]
    # Past the end of the recordings, the last one answers again.
    again = await workers(server.url, RecordingTransport.replay(path)).generate(request)
    assert again.response == "ok"


async def test_an_unrecorded_request_is_a_clear_error(
    tmp_path: Path, service: LoopbackServer
) -> None:
    path = tmp_path / "one.json"
    base = service.url + "/client/v4"
    await workers(base, RecordingTransport.record(path)).generate(
        GenerationRequest.build(prompt="What is 2 + 3?")
    )
    replay = workers(base, RecordingTransport.replay(path))
    with pytest.raises(NoRecording) as changed:
        await replay.generate(GenerationRequest.build(prompt="What is 2 + 4?"))
    assert str(changed.value) == (
        f"no recording in {path} for POST {base}/accounts/acc/ai/run/"
        "@cf/meta/llama-3.1-8b-instruct with this body; it differs from the recorded one at "
        '.messages[0].content (recorded "What is 2 + 3?", sent "What is 2 + 4?")'
    )
    other = WorkersAI("acc", TOKEN, "@cf/other", base_url=base, client=replay._http._client)
    with pytest.raises(NoRecording, match=r"recorded: POST .*llama-3\.1-8b-instruct"):
        await other.generate(GenerationRequest.build(prompt="What is 2 + 3?"))


async def test_once_records_the_first_time_and_replays_after(
    tmp_path: Path, server: LoopbackServer
) -> None:
    path = tmp_path / "cassettes" / "once.json"
    server.script(Reply(200, {"choices": [{"message": {"content": "hello"}}], "usage": USAGE}))
    answers = []
    for _ in range(2):
        transport = RecordingTransport(path, mode="once")
        client = httpx.AsyncClient(transport=transport)
        runtime = OpenAICompatible(server.url + "/v1", model="m", client=client)
        answers.append((await runtime.generate(GenerationRequest.build(prompt="hi"))).response)
        await client.aclose()
    assert answers == ["hello", "hello"]
    assert len(server.requests) == 1


def test_replaying_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(NoRecording, match=r"no recording file at .*nothing\.json; record it first"):
        RecordingTransport.replay(tmp_path / "nothing.json")


async def test_recorded_errors_replay_as_errors(tmp_path: Path, server: LoopbackServer) -> None:
    server.script(*[Reply(500, {"errors": [{"code": 1, "message": "engine down"}]})] * 3)
    path = tmp_path / "down.json"
    request = GenerationRequest.build(prompt="hi")
    for mode in ("record", "replay"):
        with pytest.raises(ServerError, match="engine down"):
            await workers(server.url, RecordingTransport(path, mode=mode)).generate(request)
    assert len(server.requests) == 3
