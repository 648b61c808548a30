"""Model runtimes behind one base class, chosen by object or by name (`get_runtime`).

- `local`: `llama_cpp.LlamaCpp`, needs `pip install 'agentkit[local]'`;
- `workers-ai`: `workers_ai.WorkersAI`, needs `CLOUDFLARE_ACCOUNT_ID` and `CLOUDFLARE_API_TOKEN`;
- `openai`: `openai.OpenAICompatible`, needs `OPENAI_BASE_URL` or `OPENAI_API_KEY`.

Wrappers (`RuntimeWrapper`) compose around any of them: `Cached` answers repeated requests
from a `CacheStore`.
"""

from __future__ import annotations

import importlib
from typing import Any

from agentkit.errors import ConfigurationError
from agentkit.runtimes._http import RetryPolicy
from agentkit.runtimes.base import Capabilities, Profile, Runtime, SchemaDialect
from agentkit.runtimes.cache_stores import CacheStore, MemoryCacheStore, SQLiteCacheStore
from agentkit.runtimes.cached import Cached, request_key
from agentkit.runtimes.openai import OpenAICompatible
from agentkit.runtimes.recording import NoRecording, RecordingTransport
from agentkit.runtimes.scripted import FunctionRuntime, ScriptedRuntime
from agentkit.runtimes.workers_ai import WorkersAI
from agentkit.runtimes.wrapper import RuntimeWrapper

__all__ = [
    "RUNTIMES",
    "CacheStore",
    "Cached",
    "Capabilities",
    "FunctionRuntime",
    "MemoryCacheStore",
    "NoRecording",
    "OpenAICompatible",
    "Profile",
    "RecordingTransport",
    "RetryPolicy",
    "Runtime",
    "RuntimeWrapper",
    "SQLiteCacheStore",
    "SchemaDialect",
    "ScriptedRuntime",
    "WorkersAI",
    "get_runtime",
    "request_key",
]

RUNTIMES: dict[str, tuple[str, str]] = {
    "local": ("agentkit.runtimes.llama_cpp", "LlamaCpp"),
    "workers-ai": ("agentkit.runtimes.workers_ai", "WorkersAI"),
    "openai": ("agentkit.runtimes.openai", "OpenAICompatible"),
}
"""Runtime names and where their classes live; each class has `from_env(**options)`."""


def get_runtime(
    name: str, *, model: str | None = None, progress: bool = False, **options: Any
) -> Runtime:
    """A runtime by name, configured from the environment and the arguments: the one way to
    make a runtime from a name (the Agent, the CLI and the server all use it).

    Args:
        name: `local`, `workers-ai` or `openai`.
        model: a GGUF file for `local`, a model name for the hosted runtimes.
        progress: for `local`, print a line to stderr while the model loads.
        **options: the runtime class's own arguments (`from_env(**options)`).

    Raises:
        ConfigurationError: the name is unknown, its extra is not installed, or a setting it
            needs is missing (the message says which).
    """
    try:
        module_name, class_name = RUNTIMES[name]
    except KeyError:
        known = ", ".join(sorted(RUNTIMES))
        raise ConfigurationError(f"unknown runtime {name!r}; known runtimes: {known}") from None
    if name == "local":
        options.setdefault("progress", progress)
        if model:
            options["model_path"] = model
    elif model:
        options["model"] = model
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
