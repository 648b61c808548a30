"""`agentkit eval` and `evaluate`: datasets in agentkit's format, the runner (concurrency,
repeats, agent runs), resuming after SIGINT in a real process, reports and `compare`."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentkit import Agent, tool
from agentkit.cli import main
from agentkit.errors import UserError
from agentkit.eval import Dataset, evaluate_sync, read_results
from agentkit.model_api import Generation, ModelRequest, ToolCall
from agentkit.runtimes import Capabilities, FunctionRuntime, ScriptedRuntime

from support.loopback import USAGE, LoopbackServer, Reply, Seen

ROOT = Path(__file__).resolve().parents[1]

TOOLS_FILE = '''
from agentkit import tool


@tool
def get_weather(city: str, unit: str = "C") -> str:
    """The weather in a city.

    Args:
        city: the city.
        unit: C or F.
    """
    return f"sunny in {city}"
'''

CITIES = ["Paris", "Oslo", "Rome", "Lima", "Kyiv", "Pune"]


def cases(unit_description: str = "C or F.") -> list[dict[str, Any]]:
    """One case a city; the model (below) gets the city right but Lima, which it spells 'Lim'."""
    weather = {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "description": unit_description},
            },
            "required": ["city"],
        },
    }
    lines: list[dict[str, Any]] = [
        {
            "id": f"w-{city.lower()}",
            "category": "weather" if n % 2 else "forecast",
            "prompt": f"Weather in {city}?",
            "tools": [weather],
            "expected": {"calls": [{"get_weather": {"city": [city], "unit": ["F"]}}]},
        }
        for n, city in enumerate(CITIES)
    ]
    lines.append(
        {"id": "chat", "category": "chat", "prompt": "Hello!", "expected": {"no_call": True}}
    )
    return lines


def write_lines(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def decide(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fake model: calls the first tool for the city in the prompt (giving unit F only when
    the tool's description speaks of Fahrenheit); answers plainly when there is no tool."""
    text = messages[-1]["content"]
    if not tools:
        return None
    function = tools[0].get("function", tools[0])
    city = text.removeprefix("Weather in ").rstrip("?")
    arguments = {"city": "Lim" if city == "Lima" else city}
    if "Fahrenheit" in json.dumps(function["parameters"]):
        arguments["unit"] = "F"
    return {"name": function["name"], "arguments": arguments}


def openai_reply(seen: Seen, delay: float) -> Reply:
    call = decide(seen.json["messages"], seen.json.get("tools", []))
    message: dict[str, Any] = {"role": "assistant", "content": None if call else "Hi there."}
    if call:
        function = {"name": call["name"], "arguments": json.dumps(call["arguments"])}
        message["tool_calls"] = [{"id": "call_1", "type": "function", "function": function}]
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if call else "stop"}
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "m"}
    return Reply(json={**body, "choices": [choice], "usage": USAGE}, delay=delay)


@pytest.fixture
def openai_model() -> Iterator[LoopbackServer]:
    """An OpenAI-compatible model on loopback, answering at once."""
    with LoopbackServer(lambda seen: openai_reply(seen, 0)) as server:
        yield server


def function_model(request: ModelRequest) -> Generation:
    tools = [t.model_dump() for t in request.tools]
    messages = [m.model_dump() for m in request.messages]
    call = decide(messages, tools)
    if call is None:
        return Generation(response="Hi there.")
    return Generation(tool_calls=[ToolCall(name=call["name"], arguments=call["arguments"])])


# -- the Python API ------------------------------------------------------------------------------


def test_each_case_gets_one_generation_with_its_tools_and_a_verdict(tmp_path: Path) -> None:
    dataset = Dataset.load(write_lines(tmp_path / "cases.jsonl", cases("F, for Fahrenheit.")))
    runtime = FunctionRuntime(function_model)
    report = evaluate_sync(runtime, dataset, progress=False)
    assert [(r.id, r.passed, r.kind) for r in report.results] == [
        ("w-paris", True, None),
        ("w-oslo", True, None),
        ("w-rome", True, None),
        ("w-lima", False, "wrong_value"),
        ("w-kyiv", True, None),
        ("w-pune", True, None),
        ("chat", True, None),
    ]
    assert report.results[3].reason == 'arguments.city: "Lim" not in ["Lima"]'
    assert report.results[3].calls == [
        {"name": "get_weather", "arguments": {"city": "Lim", "unit": "F"}}
    ]
    assert [r.tools == [] for r in runtime.requests] == [False] * 6 + [True]
    scores = {c.category: (c.passed, c.total) for c in report.by_category()}
    assert scores == {"forecast": (3, 3), "weather": (2, 3), "chat": (1, 1), "all": (6, 7)}
    assert "\nweather           2/3     66.7%\n" in report.summary()
    assert "## wrong_value (1)" in report.to_markdown()
    assert "<h2>wrong_value (1)</h2>" in report.to_html()


def test_a_case_may_allow_several_calls_where_the_runtime_lets_that_be_set(
    tmp_path: Path,
) -> None:
    lines = cases("F, for Fahrenheit.")
    lines[0]["parallel_tool_calls"] = True
    lines[1]["parallel_tool_calls"] = False
    dataset = Dataset.load(write_lines(tmp_path / "cases.jsonl", lines))
    several = FunctionRuntime(function_model, capabilities=Capabilities(parallel_tool_calls=True))
    evaluate_sync(several, dataset, progress=False)
    sent = [r.parallel_tool_calls for r in several.requests if r.tools]
    assert sent == [True, False] + [None] * (len(sent) - 2)  # the others: the runtime's default
    every = FunctionRuntime(function_model, capabilities=Capabilities(parallel_tool_calls=True))
    report = evaluate_sync(every, dataset, progress=False, parallel_tool_calls=False)
    assert {r.parallel_tool_calls for r in every.requests if r.tools} == {False}
    assert report.settings.parallel_tool_calls is False
    plain = FunctionRuntime(function_model, capabilities=Capabilities())
    evaluate_sync(plain, dataset, progress=False)  # a runtime that cannot be told is not told
    assert {r.parallel_tool_calls for r in plain.requests} == {None}
    lines[2]["parallel_tool_calls"] = "yes"
    with pytest.raises(UserError, match=r"cases.jsonl:3: parallel_tool_calls: true or false"):
        Dataset.load(write_lines(tmp_path / "cases.jsonl", lines))


def test_cases_run_as_many_at_once_as_the_runtime_has_slots(tmp_path: Path) -> None:
    running, most = 0, 0

    async def model(request: ModelRequest) -> Generation:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(0.05)
        running -= 1
        return Generation(response="ok")

    lines = [
        {"id": str(n), "prompt": "hi", "expected": {"answer": {"exact": "ok"}}} for n in range(9)
    ]
    dataset = Dataset.load(write_lines(tmp_path / "cases.jsonl", lines))
    runtime = FunctionRuntime(model)
    runtime.slots = 3
    report = evaluate_sync(runtime, dataset)
    assert (report.accuracy, report.concurrency, most) == (1.0, 3, 3)
    most = 0
    evaluate_sync(runtime, dataset, concurrency=1)
    assert most == 1


def test_progress_is_drawn_on_the_stream_asked_for(tmp_path: Path) -> None:
    lines = [
        {"id": str(n), "prompt": "hi", "expected": {"answer": {"exact": "ok"}}} for n in range(2)
    ]
    stream = io.StringIO()
    runtime = FunctionRuntime(lambda request: Generation(response="ok"))
    evaluate_sync(runtime, Dataset.load(write_lines(tmp_path / "c.jsonl", lines)), progress=stream)
    assert stream.getvalue().split("\r")[1:] == [
        "[" + "." * 30 + "] 0/2",
        "[" + "#" * 15 + "." * 15 + "] 1/2 pass 100%",
        "[" + "#" * 30 + "] 2/2 pass 100%\n",
    ]


def test_repeats_send_one_seed_each_and_count_every_attempt(tmp_path: Path) -> None:
    runtime = FunctionRuntime(lambda request: Generation(response=f"seed {request.seed}"))
    lines = [{"id": "a", "prompt": "hi", "expected": {"answer": {"contains": "seed 7"}}}]
    report = evaluate_sync(
        runtime, Dataset.load(write_lines(tmp_path / "c.jsonl", lines)), repeats=3, seed=6
    )
    assert sorted(r.seed or 0 for r in runtime.requests) == [6, 7, 8]
    assert [(r.key, r.passed) for r in report.results] == [
        ("a#0", False),
        ("a#1", True),
        ("a#2", False),
    ]


def test_final_answers_exact_contains_schema_and_predicate(tmp_path: Path) -> None:
    (tmp_path / "judges.py").write_text("def polite(answer):\n    return 'please' in answer\n")
    sys.path.insert(0, str(tmp_path))
    try:
        lines = [
            {"id": "exact", "prompt": "a", "expected": {"answer": {"exact": "42"}}},
            {"id": "contains", "prompt": "b", "expected": {"answer": {"contains": "Paris"}}},
            {
                "id": "schema",
                "prompt": "c",
                "expected": {"answer": {"schema": {"type": "object", "required": ["n"]}}},
            },
            {
                "id": "predicate",
                "prompt": "d",
                "expected": {"answer": {"predicate": "judges:polite"}},
            },
        ]
        said = {"a": " 42 ", "b": "It is Lyon.", "c": '{"m": 1}', "d": "Sit down, please."}
        runtime = FunctionRuntime(lambda r: Generation(response=said[r.messages[-1].content]))
        report = evaluate_sync(runtime, Dataset.load(write_lines(tmp_path / "c.jsonl", lines)))
    finally:
        sys.path.remove(str(tmp_path))
    assert [(r.id, r.passed, r.reason) for r in report.results] == [
        ("exact", True, ""),
        ("contains", False, 'answer: "It is Lyon." does not contain "Paris"'),
        ("schema", False, "answer: 'n' is a required property"),
        ("predicate", True, ""),
    ]


def test_an_agent_run_is_checked_by_its_trajectory_and_answer(tmp_path: Path) -> None:
    @tool
    def lookup(city: str) -> str:
        """Look a city up.

        Args:
            city: the city.
        """
        return f"{city}: sunny"

    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.call("lookup", city="Rome"),
            ScriptedRuntime.call("lookup", city="Oslo"),
            "Rome and Oslo are sunny.",
        ]
    )
    agent = Agent(runtime, tools=[lookup], tool_choice="auto")
    line = {
        "id": "trip",
        "prompt": "Weather in Oslo and Rome?",
        "expected": {
            "trajectory": [{"lookup": {"city": ["Oslo"]}}, {"lookup": {"city": ["rome"]}}],
            "order": "any_order",
            "answer": {"contains": "sunny"},
        },
    }
    report = evaluate_sync(agent, Dataset.load(write_lines(tmp_path / "c.jsonl", [line])))
    (result,) = report.results
    assert (result.passed, report.settings.mode) == (True, "agent")
    assert [c["arguments"]["city"] for c in result.calls] == ["Rome", "Oslo"]
    with pytest.raises(UserError, match="seed: an Agent's runs use the Agent's own settings"):
        evaluate_sync(agent, Dataset.load(tmp_path / "c.jsonl"), seed=1)


def test_a_bad_case_is_refused_naming_the_line_and_the_field(tmp_path: Path) -> None:
    bad = {"id": "x", "prompt": "hi", "expected": {"calls": [{"f": {"a": "not a list"}}]}}
    path = write_lines(tmp_path / "c.jsonl", [bad])
    with pytest.raises(UserError, match=r"c.jsonl:1: expected.calls\[0\].arguments.a: a list"):
        Dataset.load(path)
    with pytest.raises(UserError, match=r"expected\.order: one of set, exact"):
        Dataset.load(write_lines(path, [{**bad, "expected": {"calls": [], "order": "sideways"}}]))


def test_a_tool_file_named_once_serves_every_case(tmp_path: Path) -> None:
    (tmp_path / "weather.py").write_text(TOOLS_FILE)
    lines = [{"dataset": {"tools": "weather.py"}}, *cases()[:2]]
    for line in lines[1:]:
        del line["tools"]
    dataset = Dataset.load(write_lines(tmp_path / "c.jsonl", lines))
    assert [t.name for t in dataset.cases[0].tools] == ["get_weather"]


def test_the_output_is_resumed_and_refused_for_other_settings(tmp_path: Path) -> None:
    dataset = Dataset.load(write_lines(tmp_path / "c.jsonl", cases()))
    output = tmp_path / "out.jsonl"
    first = FunctionRuntime(function_model)
    evaluate_sync(first, dataset.select(categories=["weather"]), output=output)
    again = FunctionRuntime(function_model)
    report = evaluate_sync(again, dataset, output=output)
    assert (len(first.requests), len(again.requests), report.ran, report.total) == (3, 4, 4, 7)
    with pytest.raises(UserError, match="holds results of other settings"):
        evaluate_sync(again, dataset, output=output, repeats=2)


def test_a_line_left_half_written_by_a_crash_is_cut_and_its_case_run_again(
    tmp_path: Path,
) -> None:
    dataset = Dataset.load(write_lines(tmp_path / "c.jsonl", cases()))
    output = tmp_path / "out.jsonl"
    whole = evaluate_sync(FunctionRuntime(function_model), dataset, output=output)
    lines = output.read_text().splitlines(keepends=True)
    output.write_text("".join(lines[:-1]) + lines[-1][:25])  # the last result cut short
    again = FunctionRuntime(function_model)
    report = evaluate_sync(again, dataset, output=output)
    assert [r.messages[-1].content for r in again.requests] == ["Hello!"]
    assert [r.passed for r in report.results] == [r.passed for r in whole.results]
    assert len(output.read_text().splitlines()) == 8  # the settings and seven results


# -- the command line ----------------------------------------------------------------------------


def eval_command(dataset: Path, output: Path, server: LoopbackServer) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "agentkit.cli", "eval", str(dataset), "--runtime", "openai"),
            *("--model", "m", "--output", str(output), "--concurrency", "1", "--no-progress"),
        ],
        cwd=ROOT,
        env={**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-test"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a shell without job control starts background commands (and so
        # this test, run that way) with SIGINT ignored, which the child would inherit.
        preexec_fn=_interruptible,
    )


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def verdicts(path: Path) -> list[tuple[str, bool, str | None, str]]:
    _, results = read_results(path)
    return sorted((r.key, r.passed, r.kind, r.reason) for r in results)


@pytest.mark.subprocess
def test_an_interrupted_run_resumes_and_gives_the_same_report(
    tmp_path: Path, openai_model: LoopbackServer
) -> None:
    dataset = write_lines(tmp_path / "cases.jsonl", cases())
    whole = eval_command(dataset, tmp_path / "whole.jsonl", openai_model)
    whole_out, whole_err = whole.communicate(timeout=120)
    assert whole.returncode == 0, whole_err
    openai_model.requests.clear()

    output = tmp_path / "resumed.jsonl"
    # Two answers, then the third takes its time: the interruption comes while it is awaited,
    # however slowly this machine runs.
    openai_model.handler = lambda seen: openai_reply(
        seen, 0 if len(openai_model.requests) <= 2 else 5
    )
    first = eval_command(dataset, output, openai_model)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_lines_of(output)) < 3:
        time.sleep(0.05)  # the header and two cases written
    first.send_signal(signal.SIGINT)
    _, first_err = first.communicate(timeout=60)
    openai_model.handler = lambda seen: openai_reply(seen, 0)
    assert first.returncode == 130, first_err
    saved = len(read_results(output)[1])
    assert saved == 2
    assert f"interrupted: {saved} of 7 attempts saved in {output}" in first_err
    asked_before = len(openai_model.requests)

    second = eval_command(dataset, output, openai_model)
    second_out, second_err = second.communicate(timeout=120)
    assert second.returncode == 0, second_err
    assert len(openai_model.requests) - asked_before == 7 - saved  # only what was left
    assert verdicts(output) == verdicts(tmp_path / "whole.jsonl")
    # The same table; only the line of timings differs.
    assert second_out.splitlines()[:-1] == whole_out.splitlines()[:-1]
    assert "\nall               1/7     14.3%\n" in second_out


def test_compare_lists_the_changed_cases_with_an_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackServer(lambda seen: openai_reply(seen, 0.0)) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        before = write_lines(tmp_path / "before.jsonl", cases("C or F."))
        after = write_lines(tmp_path / "after.jsonl", cases("F, for Fahrenheit."))
        for data, output in ((before, "a.jsonl"), (after, "b.jsonl")):
            argv = ["eval", str(data), "--runtime", "openai", "--model", "m"]
            assert main([*argv, "--output", str(tmp_path / output), "--no-progress"]) == 0
    capsys.readouterr()
    status = main(["eval", "compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])
    out = capsys.readouterr().out
    assert status == 0
    assert "weather       0/3   0.0%      2/3  66.7%" in out
    assert "pass -> fail: 0" in out
    assert "fail -> pass: 5\n  w-paris\n  w-oslo\n  w-rome\n  w-kyiv\n  w-pune\n" in out
    assert "difference B - A: +71.4 points, 95% interval [+35.3, +100.0] over 7 paired" in out
    assert (
        main(
            [
                "eval",
                "compare",
                str(tmp_path / "a.jsonl"),
                str(tmp_path / "b.jsonl"),
                "--min-accuracy",
                "0.9",
            ]
        )
        == 1
    )
    assert "FAILED: accuracy 85.7% is below --min-accuracy 90.0%" in capsys.readouterr().out


AGENTS_FILE = '''
from agentkit import Agent, tool
from agentkit.model_api import Generation, ToolCall
from agentkit.runtimes import FunctionRuntime


@tool
def lookup(city: str) -> str:
    """Look a city up.

    Args:
        city: the city.
    """
    return f"{city}: sunny"


def model(request):
    last = request.messages[-1]
    if last.role == "tool":
        return Generation(response="It is " + last.content)
    city = last.content.removeprefix("Weather in ").rstrip("?")
    return Generation(tool_calls=[ToolCall(name="lookup", arguments={"city": city})])


agent = Agent(FunctionRuntime(model), tools=[lookup])
'''


def test_agents_file_runs_whole_agent_runs_and_refuses_runtime_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "agents.py").write_text(AGENTS_FILE)
    lines = [
        {
            "id": city,
            "prompt": f"Weather in {city}?",
            "expected": {
                "trajectory": [{"lookup": {"city": ["Rome"]}}],
                "answer": {"contains": "sunny"},
            },
        }
        for city in ("Rome", "Oslo")
    ]
    data = str(write_lines(tmp_path / "c.jsonl", lines))
    agents = ["--agents", str(tmp_path / "agents.py")]
    pages = ["--markdown", str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html")]
    assert main(["eval", data, *agents, "--min-accuracy", "0.5", *pages]) == 0
    out = capsys.readouterr().out
    assert "default           1/2     50.0%" in out
    assert "agent on function" in out
    assert "ok: accuracy 50.0% meets --min-accuracy 50.0%" in out
    markdown = (tmp_path / "r.md").read_text()
    assert "| default | 1 | 2 | 50.0% |" in markdown
    assert '- `Oslo#0` (default): arguments.city: "Oslo" not in ["Rome"]' in markdown
    assert "<td>default</td><td>1</td><td>2</td><td>50.0%</td>" in (tmp_path / "r.html").read_text()
    assert main(["eval", data, *agents, "--temperature", "0.5"]) == 2
    assert "--agents: --temperature cannot be given with it" in capsys.readouterr().err


def weather_caller(seen: Seen) -> Reply:
    """A model that calls the offered `weather` tool for the city in the prompt."""
    (weather,) = [t["function"] for t in seen.json["tools"] if t["function"]["name"] == "weather"]
    city = seen.json["messages"][-1]["content"].removeprefix("Weather in ").rstrip("?")
    function = {"name": weather["name"], "arguments": json.dumps({"city": city})}
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": function}],
    }
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "m"}
    return Reply(json={**body, "choices": [choice], "usage": USAGE})


@pytest.mark.subprocess
def test_an_mcp_servers_tools_serve_the_cases_that_bring_none(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        {
            "id": city,
            "prompt": f"Weather in {city}?",
            "expected": {"calls": [{"weather": {"city": ["Rome"]}}]},
        }
        for city in ("Rome", "Oslo")
    ]
    data = str(write_lines(tmp_path / "c.jsonl", lines))
    server = f"{sys.executable} {ROOT / 'tests/support/mcp_servers/sdk_server.py'}"
    with LoopbackServer(weather_caller) as model:
        monkeypatch.setenv("OPENAI_BASE_URL", model.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        argv = ["eval", data, "--runtime", "openai", "--model", "m", "--mcp-stdio", server]
        assert main(argv) == 0
    out = capfd.readouterr().out
    assert "default           1/2     50.0%" in out
    assert "failures: wrong_value 1" in out
