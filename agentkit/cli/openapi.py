"""OpenAPI services on the command line: `--openapi SPEC` (a file or a URL, repeatable) on
`run` and `chat`, each operation of the document a tool.

Calls go only to the document's first server (or `--openapi-base-url`) and to the origins of
`--openapi-allow-url`; loopback, private and link-local addresses are refused unless
`--openapi-allow-private` is given. Credentials come from the environment only (never from
an option, which other users of the machine can read in the process list):
`AGENTKIT_OPENAPI_TOKEN` (a bearer or OAuth access token), `AGENTKIT_OPENAPI_API_KEY`,
`AGENTKIT_OPENAPI_USERNAME` and `AGENTKIT_OPENAPI_PASSWORD` (basic). Every `--openapi` service
whose security schemes ask for one of them gets it.
"""

from __future__ import annotations

import argparse

from agentkit.errors import ConfigurationError, UserError
from agentkit.tools import ToolSource

__all__ = ["OPENAPI_FLAGS", "add_openapi_options", "openapi_sources"]

OPENAPI_FLAGS = (
    "--openapi",
    "--openapi-base-url",
    "--openapi-allow-url",
    "--openapi-allow-private",
    "--openapi-operation",
)
"""The options that define OpenAPI tools (refused with `--agents`, whose file defines them)."""


def add_openapi_options(parser: argparse.ArgumentParser) -> None:
    """`--openapi` and the options that go with it."""
    parser.add_argument(
        "--openapi",
        action="append",
        default=[],
        metavar="SPEC",
        help="an OpenAPI 3 document (a JSON or YAML file, or a URL) whose operations become "
        "tools (repeatable); credentials from $AGENTKIT_OPENAPI_TOKEN, "
        "$AGENTKIT_OPENAPI_API_KEY, $AGENTKIT_OPENAPI_USERNAME and $AGENTKIT_OPENAPI_PASSWORD",
    )
    parser.add_argument(
        "--openapi-base-url",
        metavar="URL",
        help="call the service here instead of at the document's first server (with one --openapi)",
    )
    parser.add_argument(
        "--openapi-allow-url",
        action="append",
        default=[],
        metavar="URL",
        help="another origin the services may be reached at (by a redirect; repeatable)",
    )
    parser.add_argument(
        "--openapi-allow-private",
        action="store_true",
        help="allow loopback, private and link-local addresses (refused by default)",
    )
    parser.add_argument(
        "--openapi-operation",
        action="append",
        default=[],
        metavar="ID",
        help="offer only this operation (its operationId or tool name; repeatable)",
    )


def openapi_sources(args: argparse.Namespace) -> list[ToolSource]:
    """The services the options name, not started yet (a URL is fetched when the agent
    starts).

    Raises:
        ConfigurationError: a file is not an OpenAPI 3 document, a URL is malformed, or YAML
            is read without pyyaml.
    """
    specs: list[str] = getattr(args, "openapi", [])
    if not specs:
        return []
    if args.openapi_base_url and len(specs) > 1:
        raise ConfigurationError(
            f"--openapi-base-url: says where one service is, and {len(specs)} --openapi "
            "documents are given"
        )
    from agentkit.openapi import OpenAPIAuth, OpenAPIError, OpenAPITools

    settings = {
        "base_url": args.openapi_base_url,
        "allowed_base_urls": args.openapi_allow_url,
        "allow_private": args.openapi_allow_private,
        "auth": OpenAPIAuth.from_env(),
        "operations": args.openapi_operation or None,
    }
    sources: list[ToolSource] = []
    for spec in specs:
        try:
            if spec.startswith(("http://", "https://")):
                sources.append(OpenAPITools.from_url(spec, **settings))
            else:
                sources.append(OpenAPITools.from_file(spec, **settings))
        except (OpenAPIError, UserError) as exc:
            raise ConfigurationError(f"--openapi: {exc}") from None
    return sources
