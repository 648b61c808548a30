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
import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemabench"
SUBSETS = ("Glaiveai2K", "Github_trivial", "Github_easy", "Handwritten", "Synthesized", "JME")
STYLES = {"ours": (", ", ": "), "compact": (",", ":")}
MASK_TOKENS = 64
"""Full masks timed per schema (the first valid instance's first tokens)."""
GBNF_MASK_TOKENS = 8
GBNF_MASK_SCHEMAS = 8
"""The GBNF sampler's full mask takes milliseconds: fewer tokens, fewer schemas per subset."""
GBNF_DEADLINE = 20.0
"""Seconds the GBNF sampler may spend on one schema's instances before the rest are skipped."""


def _subset(name: str) -> str:
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
        by_subset[_subset(path.name)].append(path)
    rng = random.Random(seed)
    chosen: list[Path] = []
    for subset in SUBSETS:
        group = by_subset[subset]
        chosen += sorted(rng.sample(group, min(sample, len(group))))
    return chosen


# -- the vocabulary -------------------------------------------------------------------------


class Vocabulary:
    """SmolLM2's tokenizer and its tokens' bytes, read from the GGUF file by llama.cpp."""

    def __init__(self) -> None:
        import ctypes

        import llama_cpp

        from agentkit.runtimes.llama_cpp import embedded_model_path

        self.llama = llama_cpp.Llama(
            model_path=str(embedded_model_path()), vocab_only=True, verbose=False
        )
        self.model = self.llama.model
        vocab = self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.eog = [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        buffer = ctypes.create_string_buffer(1024)
        self.pieces: list[bytes] = []
        self.special: set[int] = set()
        for token in range(self.n_vocab):
            n = llama_cpp.llama_token_to_piece(vocab, token, buffer, 1024, 0, True)
            self.pieces.append(buffer.raw[:n])
            if llama_cpp.llama_token_get_attr(vocab, token) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
                self.special.add(token)

    def tokenize(self, text: str) -> list[int]:
        tokens: list[int] = self.llama.tokenize(text.encode(), add_bos=False, special=False)
        return tokens


# -- the engines ----------------------------------------------------------------------------


class Engine:
    """One grammar engine: compile a schema in a style, then feed tokens to a fresh matcher."""

    name = ""
    styles: tuple[str, ...] = ("ours", "compact")
    mask_tokens = MASK_TOKENS
    mask_schemas: int | None = None
    """Schemas per subset whose masks are timed (None: all)."""

    def compile(self, schema: Any, style: str) -> Any:
        """The compiled grammar; raises with the engine's reason when it refuses the schema."""
        raise NotImplementedError

    def matcher(self, compiled: Any) -> Any:
        raise NotImplementedError

    def check(self, matcher: Any, token: int) -> bool:
        """Whether the matcher allows `token` next (its state unchanged)."""
        raise NotImplementedError

    def consume(self, matcher: Any, token: int) -> bool:
        raise NotImplementedError

    def can_end(self, matcher: Any) -> bool:
        raise NotImplementedError

    def mask(self, matcher: Any) -> None:
        """Compute the whole vocabulary's mask for the next token."""
        raise NotImplementedError

    def close(self, matcher: Any) -> None:
        pass

    def accepts(self, compiled: Any, tokens: list[int]) -> bool:
        matcher = self.matcher(compiled)
        try:
            return all(self.consume(matcher, t) for t in tokens) and self.can_end(matcher)
        finally:
            self.close(matcher)


class LLGuidance(Engine):
    name = "llguidance"
    lenient = False
    """Leave keywords it does not implement (`not`, `if`, ...) unchecked rather than refuse."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        import llguidance
        import llguidance.llamacpp
        import numpy as np

        self.llg = llguidance
        self.version = llguidance.__version__ if hasattr(llguidance, "__version__") else "?"
        self.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(
            vocabulary.vocab, eos_token=vocabulary.eog
        )
        self.buffer = np.zeros((vocabulary.n_vocab + 31) // 32, dtype=np.int32)

    def compile(self, schema: Any, style: str) -> Any:
        item, key = STYLES[style]
        options = {
            "item_separator": item,
            "key_separator": key,
            "whitespace_flexible": False,
            "lenient": self.lenient,
        }
        grammar = self.llg.LLMatcher.grammar_from_json_schema(schema, overrides=options)
        matcher = self.llg.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher

    def matcher(self, compiled: Any) -> Any:
        return compiled.deep_copy()

    def check(self, matcher: Any, token: int) -> bool:
        return bool(matcher.validate_tokens([token]) == 1)

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.try_consume_tokens([token]) == 1)

    def can_end(self, matcher: Any) -> bool:
        return bool(matcher.is_accepting())

    def mask(self, matcher: Any) -> None:
        matcher.unsafe_compute_mask_ptr(self.buffer.ctypes.data, self.buffer.nbytes)


class LLGuidanceLenient(LLGuidance):
    name = "llguidance, lenient"
    lenient = True


class AgentkitEngine(LLGuidance):
    """The answer grammar as the local runtime now compiles it (`agentkit.chat_formats.engine`):
    llguidance, keywords it lacks left to the validator, undeclared properties closed."""

    name = "agentkit on llguidance"
    styles = ("ours",)

    def compile(self, schema: Any, style: str) -> Any:
        from agentkit.chat_formats.engine import engine_grammar

        grammar = engine_grammar(schema, checked_after=True)
        matcher = self.llg.LLMatcher(self.tokenizer, grammar.text, log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher


def import_xgrammar() -> Any:
    """XGrammar, with stand-ins for torch and transformers when they are not installed (its
    package imports them for tensor and Hugging Face helpers; its matcher fills NumPy arrays)."""
    try:
        import xgrammar

        return xgrammar
    except ImportError as exc:
        if exc.name not in ("torch", "transformers"):
            raise
    import tvm_ffi  # noqa: F401  # loaded first: it looks for a real torch when imported

    class _Anything:
        def __call__(self, *args: Any, **kwargs: Any) -> _Anything:
            return _Anything()

        def __getattr__(self, name: str) -> _Anything:
            return _Anything()

        def __getitem__(self, item: Any) -> _Anything:
            return _Anything()

        def __mro_entries__(self, bases: Any) -> tuple[type, ...]:
            return (object,)

    class _StandIn(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return _Anything()

    for name in ("torch", "torch.nn", "torch.nn.functional", "transformers"):
        sys.modules.setdefault(name, _StandIn(name))
    for name in [n for n in sys.modules if n.startswith("xgrammar")]:
        del sys.modules[name]
    import xgrammar

    return xgrammar


class XGrammar(Engine):
    name = "xgrammar"

    def __init__(self, vocabulary: Vocabulary) -> None:
        import numpy as np

        xgr = self.xgr = import_xgrammar()
        # Control tokens as empty strings: XGrammar then treats them as special, never text.
        encoded = [b"" if t in vocabulary.special else p for t, p in enumerate(vocabulary.pieces)]
        info = xgr.TokenizerInfo(encoded, xgr.VocabType.RAW, stop_token_ids=vocabulary.eog)
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.stop = vocabulary.eog[0]
        self.buffer = np.zeros((1, (vocabulary.n_vocab + 31) // 32), dtype=np.int32)

    def compile(self, schema: Any, style: str) -> Any:
        return self.compiler.compile_json_schema(
            json.dumps(schema), any_whitespace=False, separators=STYLES[style]
        )

    def matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def check(self, matcher: Any, token: int) -> bool:
        if not matcher.accept_token(token):
            return False
        matcher.rollback(1)
        return True

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))

    def can_end(self, matcher: Any) -> bool:
        return bool(matcher.accept_token(self.stop))

    def mask(self, matcher: Any) -> None:
        matcher.fill_next_token_bitmask(self.buffer)


class AgentkitGBNF(Engine):
    """agentkit's builder (the answer grammar, nothing left to a validator) on llama.cpp."""

    name = "agentkit GBNF"
    checked_after = False
    """Leave the keywords it cannot hold to a validator rather than refuse (the runtime's
    default: an Agent validates every answer)."""
    styles = ("ours",)
    mask_tokens = GBNF_MASK_TOKENS
    mask_schemas = GBNF_MASK_SCHEMAS

    def __init__(self, vocabulary: Vocabulary) -> None:
        import ctypes

        import llama_cpp
        import numpy as np

        from agentkit.chat_formats import answer, get_format
        from agentkit.runtimes._sampling import Sampling, TokenSampler

        self.answer, self.chatml = answer, get_format("chatml")
        self.llama_cpp, self.ctypes, self.np = llama_cpp, ctypes, np
        self.sampler = lambda gbnf: TokenSampler(vocabulary.model, Sampling(), gbnf)
        self.stop = vocabulary.eog[-1]
        self.logits = np.zeros(vocabulary.n_vocab, dtype=np.float32)

    def compile(self, schema: Any, style: str) -> Any:
        response_format = {"type": "json_schema", "json_schema": schema}
        grammar = self.answer.answer_grammar(
            self.chatml, response_format, checked_after=self.checked_after
        )
        self.close(self.sampler(grammar))  # llama.cpp parses it
        return grammar

    def matcher(self, compiled: Any) -> Any:
        return self.sampler(compiled)

    def check(self, matcher: Any, token: int) -> bool:
        return bool(matcher.grammar.allowed(token))

    def consume(self, matcher: Any, token: int) -> bool:
        if not matcher.grammar.allowed(token):
            return False
        matcher.grammar.accept(token)
        return True

    def can_end(self, matcher: Any) -> bool:
        return bool(matcher.grammar.allowed(self.stop))

    def mask(self, matcher: Any) -> None:
        data = matcher.data
        data["id"], data["logit"], data["p"] = matcher.ids, self.logits, 0.0
        llama_cpp = self.llama_cpp
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=matcher.n_vocab,
            selected=-1,
            sorted=False,
        )
        matcher.grammar.restrict(data, array)

    def close(self, matcher: Any) -> None:
        matcher.close()


class AgentkitGBNFCheckedAfter(AgentkitGBNF):
    name = "agentkit GBNF, checked after"
    checked_after = True


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
        result = Result(_subset(path.name))
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
                if time.perf_counter() - started > GBNF_DEADLINE:
                    result.timed_out = True
                    break
                tokens = vocabulary.tokenize(dumps(data, style))
                if not engine.accepts(compiled[style], tokens):
                    result.refused[style] += 1
        for data in invalid:
            if time.perf_counter() - started > GBNF_DEADLINE:
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
        compact = "n/a" if refused["compact"] is None else refused["compact"]
        over = (
            f"{row['over_constrained']} schemas ({refused['ours']} / {compact} of "
            f"{row['valid_instances']})"
        )
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
