"""Grammar engines on JSONSchemaBench: coverage, over-constraint, compile and mask times.

`python -m benchmarks.grammar_engines [--quick] [--sample N] [--json PATH]`

For each schema of the six subsets in `../shared/data/jsonschemabench` (all of them, or a
fixed-seed sample of `--sample` per subset), each engine:

- compiles it, in the style agentkit writes JSON (`", "` between items, `": "` after keys, no
  other whitespace), and again in the compact style (`","`, `":"`); the time of the first is
  the compile time;
- is fed the tokens (SmolLM2's tokenizer, read from the GGUF file) of every valid instance,
  serialised in each style: an instance the grammar refuses, or after which it cannot end, is
  over-constraint (the model could never write that valid answer);
- is fed the invalid instances too: one it accepts is under-constraint (informative: a
  validator checks the answer afterwards);
- computes the full vocabulary mask before each token of the first valid instance (at most
  `MASK_TOKENS` tokens): the median is the mask time per token. The check of one sampled
  token (what the sampler does first) is timed too.

The engines: llguidance, XGrammar (when importable; its Python package imports torch and
transformers at import time for tensor helpers the matcher does not need with NumPy arrays: when
they are not installed, stand-in modules take their place), and agentkit's own JSON Schema ->
GBNF builder on llama.cpp's grammar sampler (our style only; its full-vocabulary mask is slow, so
it is timed on fewer tokens and schemas).

Instances are serialised with `json.dumps` (non-ASCII kept), floats with a whole value written
as integers (`1.0` -> `1`): the same JSON number, and no engine should be blamed for writing
integers without a fraction.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._engines import (
    STYLES,
    AgentkitEngine,
    AgentkitGBNF,
    AgentkitGBNFCheckedAfter,
    Engine,
    LLGuidance,
    LLGuidanceLenient,
    Vocabulary,
    XGrammar,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemabench"
SUBSETS = ("Glaiveai2K", "Github_trivial", "Github_easy", "Handwritten", "Synthesized", "JME")
DEADLINE = 20.0
"""Seconds an engine may spend on one schema's instances before the rest are skipped."""


def subset_of(name: str) -> str:
    """The subset a schema file's name belongs to."""
    return next(s for s in SUBSETS if name.startswith(s))


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


def dumps(value: Any, style: str) -> str:
    item, key = STYLES[style]
    return json.dumps(_integral(value), ensure_ascii=False, separators=(item, key))


def schema_files(data: Path, sample: int | None, seed: int) -> list[Path]:
    files = sorted(data.glob("*.json"))
    if sample is None:
        return files
    by_subset: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        by_subset[subset_of(path.name)].append(path)
    rng = random.Random(seed)
    chosen: list[Path] = []
    for subset in SUBSETS:
        group = by_subset[subset]
        chosen += sorted(rng.sample(group, min(sample, len(group))))
    return chosen


# -- the sweep ------------------------------------------------------------------------------


@dataclass
class Result:
    """One engine on one schema."""

    subset: str
    compiled: bool = False
    error: str = ""
    compile_ms: float = 0.0
    valid: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    """Valid instances refused, per style."""
    invalid: int = 0
    accepted_invalid: int = 0
    mask_us: list[float] = field(default_factory=list)
    check_us: list[float] = field(default_factory=list)
    first_ms: float | None = None
    """Compile and the first full mask: engines that build lazily pay at the first mask."""
    timed_out: bool = False


def _timed(call: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = call(*args)
    return value, time.perf_counter() - started


def run_engine(
    engine: Engine, vocabulary: Vocabulary, files: list[Path], *, log: Callable[[str], None]
) -> Iterator[Result]:
    masked: dict[str, int] = defaultdict(int)
    for number, path in enumerate(files, 1):
        if number % 100 == 0:
            log(f"  {engine.name}: {number}/{len(files)}")
        case = json.loads(path.read_text())
        result = Result(subset_of(path.name))
        compiled: dict[str, Any] = {}
        try:
            compiled["ours"], seconds = _timed(engine.compile, case["schema"], "ours")
            result.compile_ms = seconds * 1000
            for style in engine.styles[1:]:
                compiled[style] = engine.compile(case["schema"], style)
        except Exception as exc:  # each engine has its own errors: all mean "refused"
            result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            yield result
            continue
        result.compiled = True
        started = time.perf_counter()
        valid = [t["data"] for t in case["tests"] if t["valid"]]
        invalid = [t["data"] for t in case["tests"] if not t["valid"]]
        result.valid, result.invalid = len(valid), len(invalid)
        for style in engine.styles:
            result.refused[style] = 0
            for data in valid:
                if time.perf_counter() - started > DEADLINE:
                    result.timed_out = True
                    break
                tokens = vocabulary.tokenize(dumps(data, style))
                if not engine.accepts(compiled[style], tokens):
                    result.refused[style] += 1
        for data in invalid:
            if time.perf_counter() - started > DEADLINE:
                result.timed_out = True
                break
            tokens = vocabulary.tokenize(dumps(data, "ours"))
            result.accepted_invalid += engine.accepts(compiled["ours"], tokens)
        if valid and (engine.mask_schemas is None or masked[result.subset] < engine.mask_schemas):
            masked[result.subset] += 1
            tokens = vocabulary.tokenize(dumps(valid[0], "ours"))[: engine.mask_tokens]
            matcher = engine.matcher(compiled["ours"])
            try:
                for token in tokens:
                    _, mask = _timed(engine.mask, matcher)
                    allowed, check = _timed(engine.check, matcher, token)
                    if not (allowed and engine.consume(matcher, token)):
                        break
                    if result.first_ms is None:
                        result.first_ms = result.compile_ms + mask * 1000
                    result.mask_us.append(mask * 1e6)
                    result.check_us.append(check * 1e6)
            finally:
                engine.close(matcher)
        yield result


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(engine: str, subset: str, results: list[Result]) -> dict[str, Any]:
    compiled = [r for r in results if r.compiled]
    over = [r for r in compiled if any(r.refused.values())]
    return {
        "engine": engine,
        "subset": subset,
        "schemas": len(results),
        "compiled": len(compiled),
        "compiled_pct": 100 * len(compiled) / len(results) if results else 0.0,
        "with_valid": sum(1 for r in compiled if r.valid),
        "over_constrained": len(over),
        "refused_instances": {
            style: sum(r.refused[style] for r in compiled if style in r.refused)
            if any(style in r.refused for r in compiled)
            else None
            for style in STYLES
        },
        "valid_instances": sum(r.valid for r in compiled),
        "under_constrained": sum(1 for r in compiled if r.accepted_invalid),
        "invalid_instances": sum(r.invalid for r in compiled),
        "timed_out": sum(1 for r in compiled if r.timed_out),
        "mask_us": _median([m for r in compiled for m in r.mask_us]),
        "mask_us_p95": _percentile([m for r in compiled for m in r.mask_us], 95),
        "check_us": _median([c for r in compiled for c in r.check_us]),
        "compile_ms": _median([r.compile_ms for r in compiled]),
        "compile_ms_p95": _percentile([r.compile_ms for r in compiled], 95),
        "first_mask_ms": _median([r.first_ms for r in compiled if r.first_ms is not None]),
        "first_mask_ms_p95": _percentile(
            [r.first_ms for r in compiled if r.first_ms is not None], 95
        ),
        "errors": _top_errors(results),
    }


def _percentile(values: list[float], pct: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100)[pct - 1]


def _top_errors(results: list[Result], top: int = 5) -> list[tuple[str, int]]:
    counts: dict[str, int] = defaultdict(int)
    for r in results:
        if r.error:
            counts[r.error[:100]] += 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:top]


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| Engine | Subset | Schemas | Compiled | Over-constrained (ours / compact instances)"
        " | Under-constrained | Mask µs/token (p95) | Check µs/token | Compile ms (p95)"
        " | Compile + first mask ms (p95) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        refused = row["refused_instances"]
        ours = "-" if refused["ours"] is None else refused["ours"]
        compact = "n/a" if refused["compact"] is None else refused["compact"]
        over = f"{row['over_constrained']} schemas ({ours} / {compact} of {row['valid_instances']})"
        if row["timed_out"]:
            over += f", {row['timed_out']} cut short"
        lines.append(
            f"| {row['engine']} | {row['subset']} | {row['schemas']} | "
            f"{row['compiled_pct']:.1f}% | {over} | {row['under_constrained']} | "
            f"{_fmt(row['mask_us'])} ({_fmt(row['mask_us_p95'])}) | {_fmt(row['check_us'], 1)} | "
            f"{_fmt(row['compile_ms'], 2)} ({_fmt(row['compile_ms_p95'], 1)}) | "
            f"{_fmt(row['first_mask_ms'], 2)} ({_fmt(row['first_mask_ms_p95'], 1)}) |"
        )
    return "\n".join(lines)


ENGINES: dict[str, Callable[[Vocabulary], Engine]] = {
    "llguidance": LLGuidance,
    "llguidance-lenient": LLGuidanceLenient,
    "agentkit-engine": AgentkitEngine,
    "xgrammar": XGrammar,
    "gbnf": AgentkitGBNF,
    "gbnf-checked-after": AgentkitGBNFCheckedAfter,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grammar_engines")
    parser.add_argument("--quick", action="store_true", help="10 schemas per subset")
    parser.add_argument("--sample", type=int, help="a fixed-seed sample of N schemas per subset")
    parser.add_argument("--seed", type=int, default=2501)
    parser.add_argument("--engines", nargs="*", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, help="write the figures and errors here")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"no JSONSchemaBench data at {args.data}")
    sample = 10 if args.quick and args.sample is None else args.sample
    files = schema_files(args.data, sample, args.seed)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    vocabulary = Vocabulary()
    rows: list[dict[str, Any]] = []
    for name in args.engines:
        try:
            engine = ENGINES[name](vocabulary)
        except ImportError as exc:
            log(f"{name}: not installed ({exc})")
            continue
        log(f"{name}: {len(files)} schemas")
        started = time.perf_counter()
        results = list(run_engine(engine, vocabulary, files, log=log))
        log(f"  {time.perf_counter() - started:.0f} s")
        by_subset: dict[str, list[Result]] = defaultdict(list)
        for result in results:
            by_subset[result.subset].append(result)
        rows += [summarise(engine.name, s, by_subset[s]) for s in SUBSETS if by_subset[s]]
        rows.append(summarise(engine.name, "all", results))
    print(table(rows))
    scope = f"a sample of {sample} per subset (seed {args.seed})" if sample else "every schema"
    print(f"\n{len(files)} schemas: {scope}.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"sample": sample, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
