"""Load Python files given on the command line: ready-made tools (`--tools
tools/calculator.py`), and any module a command takes by path (`--agents agents.py`)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from agentkit.errors import ConfigurationError
from agentkit.tools.tool import Tool

__all__ = ["load_module", "load_tools"]


def load_module(item: str | Path, option: str = "--tools") -> ModuleType:
    """The Python file `item`, imported once (a second load returns the same module).

    Raises:
        ConfigurationError: the file is missing or fails to import; the message starts with
            `option`, the command-line option that named it.
    """
    path = Path(item).expanduser().resolve()
    if not path.is_file():
        raise ConfigurationError(f"{option}: no such file: {item}")
    # A stable private name per file, so two files named tools.py don't collide.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_agentkit_tools_{path.stem}_{digest}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"{option}: cannot import {item}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise ConfigurationError(
                f"{option}: importing {item} failed: {type(exc).__name__}: {exc}"
            ) from exc
    return module


def load_tools(*paths: str | Path | Iterable[str | Path]) -> list[Tool]:
    """Every module-level `Tool` (made with `@tool`) in the given Python files, in file order.

    Raises:
        ConfigurationError: a file is missing, fails to import, or defines no tool.
    """
    found: list[Tool] = []
    flat: list[str | Path] = []
    for p in paths:
        flat.extend([p] if isinstance(p, (str, Path)) else p)
    for item in flat:
        tools = [v for v in vars(load_module(item)).values() if isinstance(v, Tool)]
        if not tools:
            raise ConfigurationError(f"--tools: {item} defines no @tool function")
        found.extend(tools)
    return found
