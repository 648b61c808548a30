"""`python -m benchmarks [W1 W3 ...] [--quick] [--json PATH]`: run the workloads, print the
table (markdown), write it as JSON.

Workloads are discovered: every module `benchmarks/wN_*.py` with a `run(budget)` function.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import benchmarks
from benchmarks._common import Budget, Row, Unavailable, fmt

RESULTS = Path(__file__).parent / "results"
PACKAGES = [
    "agentkit",
    "pydantic",
    "pydantic-core",
    "pydantic-ai-slim",
    "openai-agents",
    "smolagents",
    "langchain-core",
    "jsonschema",
    "jsonschema-rs",
    "anyio",
    "httpx",
    "uvicorn",
    "starlette",
]


def discover() -> dict[str, str]:
    """Workload id (`W1`) -> module name, in order."""
    found = {}
    for info in pkgutil.iter_modules(benchmarks.__path__):
        match = re.fullmatch(r"w(\d+)_\w+", info.name)
        if match:
            found[f"W{match[1]}"] = f"benchmarks.{info.name}"
    return dict(sorted(found.items(), key=lambda kv: int(kv[0][1:])))


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
        "packages": versions,
    }


def table(rows: list[Row]) -> str:
    lines = [
        "| Workload | Case | Unit | agentkit | Peer | Peer figure | Peer / agentkit |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for row in rows:
        peers = row.peers or {"-": None}
        for i, (peer, value) in enumerate(peers.items()):
            head = (
                [row.workload, row.case, row.unit, fmt(row.agentkit)]
                if i == 0
                else ["", "", "", ""]
            )
            ratio = row.ratio(peer)
            lines.append(
                "| "
                + " | ".join([*head, peer, fmt(value), f"{ratio:.1f}x" if ratio else "-"])
                + " |"
            )
    return "\n".join(lines)


def checks(rows: list[Row]) -> str:
    out = []
    for row in rows:
        for check in row.checks:
            mark = "met" if check.met else "MISSED"
            out.append(f"- {row.workload} {check.target}: **{mark}** ({check.detail})")
        for note in row.notes:
            out.append(f"- {row.workload} note: {note}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    known = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("workloads", nargs="*", help=f"a subset of {', '.join(known)}")
    parser.add_argument("--quick", action="store_true", help="small loops: a smoke run")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    wanted = [w.upper() for w in args.workloads] or list(known)
    unknown = [w for w in wanted if w not in known]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(known)}")
    budget = Budget(quick=args.quick)
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    started = time.perf_counter()
    for workload in wanted:
        module = importlib.import_module(known[workload])
        title = (module.__doc__ or workload).strip().splitlines()[0]
        print(f"running {title}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            rows.extend(module.run(budget))
        except Unavailable as exc:
            skipped[workload] = str(exc)
            print(f"  skipped: {exc}", file=sys.stderr)
        print(f"  {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    info = machine()
    print(table(rows))
    print()
    print(checks(rows))
    for workload, reason in skipped.items():
        print(f"- {workload} skipped: {reason}")
    print()
    print(
        f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"{time.perf_counter() - started:.0f} s" + (" (quick run)" if args.quick else "")
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "machine": info,
                "rows": [r.to_json() for r in rows],
                "skipped": skipped,
                "seconds": time.perf_counter() - started,
            },
            indent=2,
        )
    )
    print(f"written {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
