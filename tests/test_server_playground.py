"""The playground page in headless Chromium (Debian's `chromium`, driven by Playwright): it loads,
streams answers in, shows tool calls and their results, and its curl command works.

Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkit import (
    Agent,
    Capabilities,
    FunctionRuntime,
    Generation,
    ModelRequest,
    Profile,
    Runtime,
    ScriptedRuntime,
    StreamChunk,
    tool,
)
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.server import create_app
from agentkit.server.background import BackgroundServer
from agentkit.tools.loader import load_tools

from support.browser import screenshot
from support.server import QUESTION, Calculator

ROOT = Path(__file__).resolve().parents[1]
# Records every length the first answer bubble had, to tell a stream from a single write.
WATCH_STREAMING = """
window.__lengths = [];
new MutationObserver(() => {
  const bubble = document.querySelector('.msg.assistant .bubble');
  if (bubble) window.__lengths.push(bubble.textContent.length);
}).observe(document.getElementById('transcript'),
           {subtree: true, childList: true, characterData: true});
"""


@pytest.mark.model
def test_the_page_streams_an_answer_from_the_model(page: Page) -> None:
    model = LlamaCpp()
    try:
        with BackgroundServer(create_app(model)) as server:
            page.goto(server.url + "/")
            expect(page).to_have_title("agentkit playground")
            expect(page.locator("#status")).to_have_text("ready")
            expect(page.locator("#model option")).to_have_text(
                ["@cf/meta/llama-3.1-8b-instruct", "@agentkit/local"]
            )
            expect(page.locator("#runtime")).to_have_text("local runtime")
            expect(page.locator("#tools-box")).to_be_hidden()
            page.fill("#max_tokens", "24")
            page.fill("#temperature", "0")
            page.evaluate(WATCH_STREAMING)
            page.fill("#prompt", "Tell me about the sea.")
            page.press("#prompt", "Enter")
            expect(page.locator(".msg.user .bubble")).to_have_text("Tell me about the sea.")
            expect(page.locator(".meta")).to_contain_text("1 step", timeout=60_000)
            answer = page.locator(".msg.assistant .bubble").inner_text()
            assert answer.strip()
            lengths = page.evaluate("window.__lengths")
            assert len(set(lengths)) >= 3, f"the answer did not stream in: {lengths}"
            expect(page.locator("#usage")).to_contain_text("last run: 1 step")
            expect(page.locator("#status")).to_have_text("ready")
            screenshot(page, "playground-local-model.png")
    finally:
        # Playwright's sync API keeps an event loop on this thread: close from another one.
        closer = threading.Thread(target=anyio.run, args=(model.aclose,))
        closer.start()
        closer.join()


@pytest.mark.model
def test_the_embedded_model_calls_a_tool_from_the_page(page: Page) -> None:
    model = LlamaCpp()
    (calculate,) = load_tools([ROOT / "tools" / "calculator.py"])
    try:
        with BackgroundServer(create_app(model, tools=[calculate])) as server:
            page.goto(server.url + "/")
            expect(page.locator("#tools-box")).to_be_visible()
            page.fill("#temperature", "0")
            page.select_option("#tool_choice", "required")
            page.fill("#prompt", "What is 37 * 41?")
            page.press("#prompt", "Enter")
            card = page.locator(".toolcall")
            expect(card.locator(".name")).to_have_text("calculate", timeout=60_000)
            expect(card.locator(".result")).to_have_text("1517", timeout=60_000)
            expect(page.locator(".meta")).to_contain_text("2 steps", timeout=60_000)
            expect(page.locator(".msg.assistant .bubble")).to_contain_text("1517")
            screenshot(page, "playground-local-tools.png")
    finally:
        closer = threading.Thread(target=anyio.run, args=(model.aclose,))
        closer.start()
        closer.join()


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city name.
    """
    return f"{city}: sunny, 21 °C"


def weather_model(request: ModelRequest) -> Generation | str:
    """Calls get_weather for the last user message, then answers from the result."""
    last = request.messages[-1]
    if last.role == "tool":
        return f"In Paris it is {last.content.split(': ')[1]}."
    return ScriptedRuntime.call("get_weather", city="Paris")


@pytest.mark.subprocess
def test_the_page_shows_tool_calls_and_sends_the_settings(page: Page) -> None:
    runtime = FunctionRuntime(weather_model)
    with BackgroundServer(create_app(runtime, tools=[get_weather])) as server:
        page.goto(server.url + "/")
        expect(page.locator("#tools-box")).to_be_visible()
        expect(page.locator("#tool-list li")).to_have_text(
            ["get_weather Get the current weather in a city."]
        )
        settings = {
            "#instructions": "You report the weather.",
            "#temperature": "0.3",
            "#top_p": "0.9",
            "#top_k": "20",
            "#max_tokens": "64",
            "#seed": "1234",
            "#repetition_penalty": "1.1",
            "#frequency_penalty": "0.2",
            "#presence_penalty": "0.1",
        }
        for selector, value in settings.items():
            page.fill(selector, value)
        page.fill("#prompt", "What is the weather in Paris?")
        page.click("#send")

        card = page.locator(".toolcall")
        expect(card).to_have_class("toolcall ok")
        expect(card.locator(".name")).to_have_text("get_weather")
        assert json.loads(card.locator("pre").first.inner_text()) == {"city": "Paris"}
        expect(card.locator(".result")).to_have_text("Paris: sunny, 21 °C")
        expect(page.locator(".msg.assistant .bubble")).to_have_text("In Paris it is sunny, 21 °C.")
        expect(page.locator(".meta")).to_contain_text("2 steps")
        screenshot(page, "playground-tool-calls.png")

        first = runtime.requests[0]
        assert first.messages is not None
        assert (first.messages[0].role, first.messages[0].content) == (
            "system",
            "You report the weather.",
        )
        assert first.sampling() == {
            "max_tokens": 64,
            "temperature": 0.3,
            "top_p": 0.9,
            "top_k": 20,
            "seed": 1234,
            "repetition_penalty": 1.1,
            "frequency_penalty": 0.2,
            "presence_penalty": 0.1,
        }
        assert first.tools is not None and [t.name for t in first.tools] == ["get_weather"]

        # The curl command it copies is the same conversation, and it runs.
        page.fill("#prompt", "And in Rome?")
        page.click("#copy-curl")
        command = page.locator("#curl").inner_text()
        assert command.startswith(f"curl {server.url}/client/v4/accounts/local/ai/run/@cf/")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == command
        done = subprocess.run(["bash", "-c", command + " --silent"], capture_output=True, text=True)
        answer = json.loads(done.stdout)
        assert answer["success"] is True
        assert answer["result"]["tool_calls"] == [
            {"name": "get_weather", "arguments": {"city": "Paris"}}
        ]
        sent = runtime.requests[-1].messages
        assert sent is not None
        assert [m.role for m in sent] == [
            "system",
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
        ]
        assert sent[-1].content == "And in Rome?"


def test_the_page_asks_for_the_token_when_the_server_has_one(page: Page) -> None:
    runtime = ScriptedRuntime(["Welcome in."])
    with BackgroundServer(create_app(runtime, api_token="s3cret-token")) as server:
        page.goto(server.url + "/")
        expect(page.locator("#token-box")).to_be_visible()
        expect(page.locator("#error")).to_have_text(
            "This server needs an API token: enter it under Settings."
        )
        page.fill("#token", "s3cret-token")
        page.dispatch_event("#token", "change")
        expect(page.locator("#status")).to_have_text("ready")
        expect(page.locator("#error")).to_be_hidden()
        page.fill("#prompt", "Knock knock")
        page.press("#prompt", "Enter")
        expect(page.locator(".msg.assistant .bubble")).to_have_text("Welcome in.")
        page.click("#copy-curl")
        # The command names the token's variable, never the token itself.
        command = page.locator("#curl").inner_text()
        assert '-H "Authorization: Bearer $AGENTKIT_API_TOKEN"' in command
        assert "s3cret-token" not in command


class EndlessRuntime(Runtime):
    """Streams words until its consumer goes away; records that it was stopped."""

    name = "endless"
    capabilities = Capabilities()

    def __init__(self) -> None:
        self.stopped = threading.Event()

    async def handle_generate(self, request: ModelRequest) -> Generation:
        raise AssertionError("the playground streams: generate is never called")

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        try:
            while True:
                yield StreamChunk(response="la ")
                await anyio.sleep(0.05)
        finally:
            self.stopped.set()


def test_stop_ends_the_generation_on_the_server(page: Page) -> None:
    runtime = EndlessRuntime()
    with BackgroundServer(create_app(runtime)) as server:
        page.goto(server.url + "/")
        page.fill("#prompt", "Sing")
        page.press("#prompt", "Enter")
        expect(page.locator(".msg.assistant .bubble")).to_contain_text("la la la")
        expect(page.locator("#stop")).to_be_visible()
        page.click("#stop")
        expect(page.locator(".meta")).to_have_text("stopped")
        assert runtime.stopped.wait(5), "the server kept generating after Stop"
        expect(page.locator("#send")).to_be_enabled()


def test_the_page_shows_bad_settings_as_the_api_names_them(page: Page) -> None:
    with BackgroundServer(create_app(ScriptedRuntime())) as server:
        page.goto(server.url + "/")
        page.fill("#top_k", "80")
        page.fill("#prompt", "hi")
        page.press("#prompt", "Enter")
        expect(page.locator("#error")).to_have_text(
            "Bad input: top_k: must be <= 50 (got 80) (code 5006)"
        )


def test_the_page_starts_from_the_runtimes_profile(page: Page) -> None:
    """The embedded model's defaults reach the page, as they reach the library and the CLI."""

    class Small(ScriptedRuntime):
        profile = Profile(tool_choice="required", sampling={"temperature": 0.0})

    runtime = Small([ScriptedRuntime.call("get_weather", city="Paris"), "Sunny in Paris."])
    with BackgroundServer(create_app(runtime, tools=[get_weather])) as server:
        page.goto(server.url + "/")
        expect(page.locator("#status")).to_have_text("ready")
        expect(page.locator("#tool_choice")).to_have_value("required")
        expect(page.locator("#temperature")).to_have_value("0")
        page.fill("#prompt", "Weather in Paris?")
        page.press("#prompt", "Enter")
        expect(page.locator(".meta")).to_contain_text("2 steps", timeout=30_000)
    first = runtime.requests[0]
    assert (first.tool_choice, first.temperature) == ("required", 0.0)


# -- other web pages ----------------------------------------------------------------------------

HOSTILE = """<!doctype html><title>another site</title>
<form id="plain" method="POST" enctype="text/plain" target="sink1"
      action="{target}/playground/agent">
  <input name='{{"messages": [{{"role": "user", "content": "What is 37 * 41?"}}], "x": "'
         value='"}}'>
</form>
<form id="api" method="POST" target="sink2"
      action="{target}/client/v4/accounts/a/ai/run/@agentkit/function">
  <input name="prompt" value="hi">
</form>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<script>
const TARGET = "{target}";
const QUESTION = JSON.stringify({question});
async function attack(mode, type) {{
  try {{
    const answer = await fetch(TARGET + "/playground/agent",
      {{method: "POST", mode, headers: {{"Content-Type": type}}, body: QUESTION}});
    return mode === "no-cors" ? answer.type : answer.status + " " + await answer.text();
  }} catch (error) {{
    return "failed: " + error;
  }}
}}
</script>
"""


def recording(app: ASGIApp, seen: list[tuple[str, str, int]]) -> ASGIApp:
    """`app`, noting each request's method, path and answer status in `seen`."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def note(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await app(scope, receive, note)

    return wrapped


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, "the browser's requests did not arrive"
        time.sleep(0.05)


def another_site(target: str, **page: str) -> BackgroundServer:
    html = HOSTILE.format(target=target, question=json.dumps(QUESTION), **page)
    return BackgroundServer(Starlette(routes=[Route("/", lambda request: HTMLResponse(html))]))


def test_a_page_on_another_origin_cannot_run_the_tools(browser: Browser, page: Page) -> None:
    calculator = Calculator()
    seen: list[tuple[str, str, int]] = []
    app = create_app(calculator.runtime, tools=[calculator.tool])
    with BackgroundServer(recording(app, seen)) as server, another_site(server.url) as site:
        context = browser.new_context()
        hostile = context.new_page()
        hostile.goto(site.url + "/")
        # A no-cors fetch and a text/plain fetch need no preflight: both reach the server.
        assert hostile.evaluate("attack('no-cors', 'text/plain')") == "opaque"
        assert hostile.evaluate("attack('cors', 'text/plain')").startswith("failed: ")
        # A JSON fetch needs a preflight, which is refused: it never gets sent.
        assert hostile.evaluate("attack('cors', 'application/json')").startswith("failed: ")
        # Plain HTML forms, one shaped as JSON for the playground, one for the API.
        hostile.evaluate("document.getElementById('plain').submit()")
        wait_for(lambda: len(seen) == 4)
        hostile.evaluate("document.getElementById('api').submit()")
        wait_for(lambda: len(seen) == 5)
        context.close()
        assert [(m, p.split("/")[-1], s) for m, p, s in seen] == [
            ("POST", "agent", 403),
            ("POST", "agent", 403),
            ("OPTIONS", "agent", 403),
            ("POST", "agent", 403),
            ("POST", "function", 403),
        ]
        assert calculator.runs == [] and calculator.runtime.requests == []

        # The playground on the server's own origin still runs the tool.
        page.goto(server.url + "/")
        page.select_option("#tool_choice", "required")
        page.fill("#prompt", "What is 37 * 41?")
        page.press("#prompt", "Enter")
        expect(page.locator(".toolcall .result")).to_have_text("1517")
        expect(page.locator(".msg.assistant .bubble")).to_have_text("It is 1517.")
        assert calculator.runs == ["37 * 41"]


def test_a_page_on_another_origin_cannot_frame_the_playground(browser: Browser) -> None:
    # Framed, the page's Approve buttons could be clicked through a decoy (clickjacking).
    with BackgroundServer(create_app(ScriptedRuntime())) as server:
        framing = f'<iframe name="victim" src="{server.url}/" width="800" height="600"></iframe>'
        app = Starlette(routes=[Route("/", lambda request: HTMLResponse(framing))])
        with BackgroundServer(app) as site:
            context = browser.new_context()
            hostile = context.new_page()
            refusals: list[str] = []
            hostile.on("console", lambda m: refusals.append(m.text))
            hostile.goto(site.url + "/")  # waits for the frame to load, or to fail
            victim = hostile.frame(name="victim")
            assert victim is not None
            assert victim.locator("#send").count() == 0
            context.close()
    assert any("frame-ancestors 'none'" in r or "X-Frame-Options" in r for r in refusals)


def test_the_page_is_sent_with_a_content_security_policy(
    serve: Callable[..., BackgroundServer],
) -> None:
    server = serve(ScriptedRuntime())
    answer = httpx.get(server.url + "/")
    assert answer.headers["x-frame-options"] == "DENY"
    directives = answer.headers["content-security-policy"].split("; ")
    policy = {name: value for name, _, value in (d.partition(" ") for d in directives)}
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"


def test_an_allowed_origin_calls_the_api_with_cors(browser: Browser) -> None:
    calculator = Calculator()
    with another_site("") as site:
        app = create_app(calculator.runtime, tools=[calculator.tool], allowed_origins=[site.url])
        with BackgroundServer(app) as server:
            context = browser.new_context()
            other = context.new_page()
            other.goto(site.url + "/")
            other.evaluate(f"() => {{ window.TARGET = {json.dumps(server.url)}; }}")
            answer = other.evaluate(
                """async () => {
                  const answer = await fetch(window.TARGET + "/playground/agent", {
                    method: "POST", headers: {"Content-Type": "application/json"},
                    body: QUESTION});
                  return answer.status + " " + await answer.text();
                }"""
            )
            context.close()
    assert answer.startswith("200 ")
    assert '"output":"It is 1517."' in answer
    assert calculator.runs == ["37 * 41"]


@pytest.mark.model
def test_the_page_sets_a_schema_and_shows_the_answer_object(page: Page) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    model = LlamaCpp()
    try:
        with BackgroundServer(create_app(model)) as server:
            page.goto(server.url + "/")
            expect(page.locator("#status")).to_have_text("ready")
            expect(page.locator("#schema")).to_be_hidden()
            page.check("#use-schema")
            page.fill("#schema", json.dumps(schema))
            page.fill("#temperature", "0")
            page.fill("#max_tokens", "40")
            page.fill("#prompt", "Alice is 31 years old. Give her name and age.")
            page.keyboard.press("Enter")
            expect(page.locator("#status")).to_have_text("ready", timeout=60_000)
            expect(page.locator("#error")).to_be_hidden()
            answer = page.locator(".msg.assistant .bubble").last
            expect(answer).to_have_class("bubble json")
            text = answer.text_content() or ""
            value = json.loads(text)
            assert set(value) == {"name", "age"} and isinstance(value["age"], int)
            assert "\n  " in text  # shown indented
            # The curl command asks the API for the same format.
            page.click("#copy-curl")
            assert '"response_format"' in (page.locator("#curl").text_content() or "")
            # A schema that is not JSON is reported before anything is sent.
            page.fill("#schema", "{not json")
            page.fill("#prompt", "again")
            page.keyboard.press("Enter")
            expect(page.locator("#error")).to_contain_text("JSON Schema: not valid JSON")
            screenshot(page, "playground-schema.png")
    finally:
        closer = threading.Thread(target=anyio.run, args=(model.aclose,))
        closer.start()
        closer.join()


@tool
def invoice(order: int) -> str:
    """An order's invoice.

    Args:
        order: The order number.
    """
    return f"order {order}: 12.50 EUR, paid"


@pytest.mark.subprocess
def test_the_page_shows_which_agent_answered_and_the_path_of_a_sub_agents_calls(
    page: Page,
) -> None:
    billing = Agent(
        ScriptedRuntime([ScriptedRuntime.call("invoice", order=7), "Order 7 is paid."]),
        tools=[invoice],
        name="billing",
    )
    triage = Agent(
        ScriptedRuntime(
            [ScriptedRuntime.call("billing", input="Is order 7 paid?"), "Yes, order 7 is paid."]
        ),
        tools=[billing.as_tool(description="Answers billing questions.")],
        name="triage",
    )
    with BackgroundServer(create_app(triage.runtime, agent=triage)) as server:
        page.goto(server.url + "/")
        expect(page.locator("#agent")).to_have_text("agent: triage")
        expect(page.locator("#model-settings")).to_be_hidden()
        expect(page.locator("#tool-list li")).to_have_text(["billing Answers billing questions."])
        page.fill("#prompt", "Is order 7 paid?")
        page.press("#prompt", "Enter")
        answers = page.locator(".msg.assistant")
        expect(answers).to_have_count(2)
        expect(answers.last.locator(".bubble")).to_have_text("Yes, order 7 is paid.")
        expect(answers.last.locator(".agent")).to_have_text("triage")
        expect(answers.first.locator(".agent")).to_have_text("triage/billing")
        expect(answers.first.locator(".bubble")).to_have_text("Order 7 is paid.")
        cards = page.locator(".toolcall")
        expect(cards.locator(".name")).to_have_text(["billing", "invoice"])
        expect(cards.nth(0).locator(".path")).to_have_count(0)
        expect(cards.nth(1).locator(".path")).to_have_text("triage/billing")
        expect(cards.nth(1).locator(".result")).to_have_text("order 7: 12.50 EUR, paid")
        expect(page.locator(".meta")).to_have_text(["2 steps · 0 prompt + 0 completion tokens"])
        screenshot(page, "playground-agents.png")


def test_the_page_shows_a_handoff_and_the_agent_that_took_over(page: Page) -> None:
    billing = Agent(ScriptedRuntime(["Order 7 is paid."]), name="billing")
    triage = Agent(
        ScriptedRuntime([ScriptedRuntime.call("transfer_to_billing")]),
        name="triage",
        handoffs=[billing],
    )
    with BackgroundServer(create_app(triage.runtime, agent=triage)) as server:
        page.goto(server.url + "/")
        page.fill("#prompt", "Is order 7 paid?")
        page.press("#prompt", "Enter")
        answers = page.locator(".msg.assistant")
        expect(answers.last.locator(".bubble")).to_have_text("Order 7 is paid.")
        expect(answers.last.locator(".agent")).to_have_text("billing")
        expect(page.locator(".meta")).to_have_text(
            ["handoff: triage → billing", "2 steps · 0 prompt + 0 completion tokens"]
        )
        screenshot(page, "playground-handoff.png")
