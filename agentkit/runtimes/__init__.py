"""Model runtimes behind one protocol, chosen by object or by name.

- `local`: `llama_cpp.LlamaCpp`, needs `pip install 'agentkit[local]'`;
- `workers-ai`: `workers_ai.WorkersAI`, needs `CLOUDFLARE_ACCOUNT_ID` and `CLOUDFLARE_API_TOKEN`;
- `openai`: `openai.OpenAICompatible`, needs `OPENAI_BASE_URL` or `OPENAI_API_KEY`.
"""

from __future__ import annotations

import importlib
from typing import Any

from agentkit.errors import ConfigurationError
from agentkit.runtimes._http import RetryPolicy
from agentkit.runtimes.base import Capabilities, Runtime, SchemaDialect, check_supported
from agentkit.runtimes.openai import OpenAICompatible
from agentkit.runtimes.recording import NoRecording, RecordingTransport
from agentkit.runtimes.scripted import FunctionRuntime, ScriptedRuntime
from agentkit.runtimes.workers_ai import WorkersAI

__all__ = [
    "RUNTIMES",
    "Capabilities",
    "FunctionRuntime",
    "NoRecording",
    "OpenAICompatible",
    "RecordingTransport",
    "RetryPolicy",
    "Runtime",
    "SchemaDialect",
    "ScriptedRuntime",
    "WorkersAI",
    "check_supported",
    "get_runtime",
    "resolve_runtime",
    "runtime_for",
]

RUNTIMES: dict[str, tuple[str, str]] = {
    "local": ("agentkit.runtimes.llama_cpp", "LlamaCpp"),
    "workers-ai": ("agentkit.runtimes.workers_ai", "WorkersAI"),
    "openai": ("agentkit.runtimes.openai", "OpenAICompatible"),
}
"""Runtime names and where their classes live; each class has `from_env(**options)`."""


def get_runtime(name: str, **options: Any) -> Runtime:
    """A runtime by name, configured from the environment and `options`.

    Raises:
        ConfigurationError: the name is unknown, its extra is not installed, or a setting it
            needs is missing (the message says which).
    """
    try:
        module_name, class_name = RUNTIMES[name]
    except KeyError:
        known = ", ".join(sorted(RUNTIMES))
        raise ConfigurationError(f"unknown runtime {name!r}; known runtimes: {known}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # Only the local runtime has an extra; the hosted ones need the core dependencies.
        hint = "pip install 'agentkit[local]'" if name == "local" else "pip install agentkit"
        raise ConfigurationError(
            f"runtime {name!r} needs a package that is not installed ({exc.name}): {hint}"
        ) from None
    runtime: Runtime = getattr(module, class_name).from_env(**options)
    return runtime


def runtime_for(name: str, model: str | None = None, *, progress: bool = False) -> Runtime:
    """A runtime as the command line names it: `model` is a GGUF file for `local` (which may
    show loading progress), a model name for the hosted runtimes."""
    options: dict[str, Any] = {}
    if name == "local":
        options["progress"] = progress
        if model:
            options["model_path"] = model
    elif model:
        options["model"] = model
    return get_runtime(name, **options)


def resolve_runtime(runtime: Runtime | str) -> Runtime:
    """A runtime object as is, or one made by name."""
    return get_runtime(runtime) if isinstance(runtime, str) else runtime
