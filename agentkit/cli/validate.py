"""`agentkit validate FILE`: every problem of the tool definitions in a JSON or JSON Lines
file, with its path; exit status 1 if there is any."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentkit.errors import UserError
from agentkit.tools import validate_tool_definitions

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit validate`: its argument and handler."""
    validate = commands.add_parser("validate", help="check tool definitions in a JSON file")
    validate.add_argument("file")
    validate.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    data = _json_or_lines(args.file)
    if isinstance(data, dict):
        data = [data]
    definitions: list[Any] = []
    for item in data:
        inner = item.get("function") if isinstance(item, dict) else None
        definitions.extend(inner if isinstance(inner, list) else [item])
    problems = validate_tool_definitions(definitions)
    for problem in problems:
        print(problem)
    print(f"{len(definitions)} definitions, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


def _json_or_lines(path: str) -> Any:
    """A JSON file's value, or a JSON Lines file's values (one object a line, as BFCL's files,
    with the definitions under "function")."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"validate: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"validate: {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not lines:
            raise UserError(f"validate: {path} is empty") from None
        values = []
        for n, line in lines:
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as exc:
                # Lines after a first one that parses: JSON Lines with a bad line.
                error, where = (exc, f"line {n}") if values else (whole, f"line {whole.lineno}")
                raise UserError(
                    f"validate: {path} is not JSON or JSON Lines: {error.msg} at {where}, "
                    f"column {error.colno}"
                ) from None
        return values
