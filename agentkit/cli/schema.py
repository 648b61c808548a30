"""`agentkit schema`: the contract's JSON Schemas, or tools as a model sees them."""

from __future__ import annotations

import argparse
import json

from agentkit.tools.loader import load_tools
from agentkit.wire.workers_ai import generation_json_schema, request_json_schema

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit schema`: its options and handler."""
    schema = commands.add_parser("schema", help="print JSON schemas")
    schema.add_argument("which", nargs="?", choices=["request", "generation"], default="request")
    schema.add_argument("--tools", nargs="+", metavar="FILE", help="print these tools instead")
    schema.add_argument("--shape", choices=["legacy", "function"], default="function")
    schema.add_argument("--dialect", choices=["full", "inline", "strict"], default="inline")
    schema.set_defaults(handler=_schema)


def _schema(args: argparse.Namespace) -> int:
    if args.tools:
        tools = load_tools(args.tools)
        shape = [
            t.to_legacy(args.dialect) if args.shape == "legacy" else t.to_function(args.dialect)
            for t in tools
        ]
        print(json.dumps(shape, indent=2))
    else:
        schema = request_json_schema() if args.which == "request" else generation_json_schema()
        print(json.dumps(schema, indent=2))
    return 0
