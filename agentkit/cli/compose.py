"""The runtime wrappers on the command line: `--fallback RUNTIME[:MODEL]` (repeatable),
`--rpm` and `--tpm`, for `run`, `chat`, `serve` and `worker`.

Each command builds its runtime from `--runtime` and `--model`, then hands it to
`agentkit.cli.options.wrap_runtime`, which composes it here (`compose_runtime`) and puts a
response cache (`--cache`) around the whole:

```
--runtime workers-ai --rpm 300 --fallback openai:gpt-4o-mini
    ->  Fallback([RateLimit(workers-ai, requests_per_minute=300), openai:gpt-4o-mini])
```

The limits are the `--runtime` service's: a request that finds them full waits, or, with a
fallback, goes to the next runtime at once.
"""

from __future__ import annotations

import argparse
import sys

from agentkit.errors import ConfigurationError
from agentkit.runtimes import RUNTIMES, Fallback, RateLimit, get_runtime
from agentkit.runtimes.base import Runtime

__all__ = ["COMPOSITION_FLAGS", "add_composition_options", "compose_runtime"]

COMPOSITION_FLAGS = ("--fallback", "--rpm", "--tpm")
"""The options that wrap the runtime; refused with `--agents`, whose agent brings its own."""


def add_composition_options(parser: argparse.ArgumentParser) -> None:
    """`--fallback`, `--rpm` and `--tpm`."""
    parser.add_argument(
        "--fallback",
        action="append",
        default=[],
        metavar="RUNTIME[:MODEL]",
        help="a runtime to try when the one before it fails (429, 5xx, unreachable); "
        "repeatable, tried in order, e.g. --fallback openai:gpt-4o-mini",
    )
    parser.add_argument(
        "--rpm", type=float, metavar="N", help="requests a minute the --runtime service allows"
    )
    parser.add_argument(
        "--tpm", type=float, metavar="N", help="tokens a minute the --runtime service allows"
    )


def _fallback(value: str) -> Runtime:
    name, _, model = value.partition(":")
    if name not in RUNTIMES:
        known = ", ".join(sorted(RUNTIMES))
        raise ConfigurationError(
            f"--fallback: unknown runtime {name!r} (got {value!r}); known runtimes: {known}"
        )
    return get_runtime(name, model=model or None, progress=sys.stderr.isatty())


def compose_runtime(args: argparse.Namespace, runtime: Runtime) -> Runtime:
    """`runtime` (made from `--runtime` and `--model`) within `--rpm` and `--tpm`, followed
    by the `--fallback` runtimes; as it is when none of them is given. The result owns every
    runtime in it: closing it closes them all.

    Raises:
        ConfigurationError: a limit under one a minute, or an unknown runtime in
            `--fallback` (named with the value given).
    """
    for flag, value in (("--rpm", args.rpm), ("--tpm", args.tpm)):
        if value is not None and not value >= 1:  # less allows nothing in a minute
            raise ConfigurationError(f"{flag}: must be >= 1 (got {value:g})")
    if args.rpm is not None or args.tpm is not None:
        runtime = RateLimit(
            runtime, requests_per_minute=args.rpm, tokens_per_minute=args.tpm, owns=True
        )
    if not args.fallback:
        return runtime
    return Fallback([runtime, *(_fallback(value) for value in args.fallback)], owns=True)
