"""Answers to real-world schemas: how often the embedded model's greedy answer is valid, and
what the grammar costs a token against free decoding, per JSONSchemaBench subset.

`python -m benchmarks.answer_coverage [--quick] [--sample N | --all] [--out PATH] [--json PATH]`

For each schema of the six subsets in `../shared/data/jsonschemabench` (a fixed-seed sample of
`--sample` per subset, or `--all`), taken a subset at a time in turn so that a stopped run has
some of each, the local runtime (SmolLM2-135M-Instruct, greedy, `max_tokens` 512) is asked for
an answer with `response_format` `json_schema`:

- refused: the runtime turns the schema down before a token (a keyword the engine cannot hold
  and nothing validates after, or a schema whose outline does not fit half the context);
- valid / invalid: the answer checked as an Agent with that output type checks it
  (`jsonschema_rs`, the schema's own draft); `truncated`: the budget ran out and the runtime
  ended the answer early (it is counted valid when it validates);
- the cost a token: the streamed answer's time from its first chunk to its last over its
  tokens, against a free generation (no grammar) of the same prompt, same model, just before.

Every schema's result is appended to `--out` as it finishes (default
`benchmarks/results/answer_coverage.jsonl`); a run started again with the same settings skips
what is there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from benchmarks._streaming import token_counter
from benchmarks.grammar_engines import DATA, SUBSETS, schema_files, subset_of

OUT = Path(__file__).parent / "results" / "answer_coverage.jsonl"
PROMPT = "Write an example of the object described, with realistic values."
MAX_TOKENS = 512
FREE_TOKENS = 64
"""Tokens of the free generation each schema's cost is compared with (fewer if it stops)."""
TARGET_VALID = 0.95
TARGET_RATIO = 10.0


@dataclass
class Answer:
    """One schema's greedy answer."""

    schema: str
    subset: str
    verdict: str
    """`valid`, `invalid`, `refused` or `error`."""
    reason: str = ""
    tokens: int = 0
    truncated: bool = False
    seconds: float = 0.0
    """From the request to the last chunk (compile and prompt included)."""
    per_token: float | None = None
    """Seconds a token under the grammar, from the first chunk to the last."""
    free_per_token: float | None = None
    """Seconds a token of the free generation of the same prompt."""

    @property
    def ratio(self) -> float | None:
        if self.per_token is None or not self.free_per_token:
            return None
        return self.per_token / self.free_per_token


def interleaved(files: list[Path]) -> list[Path]:
    """One schema of each subset in turn."""
    by: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        by[subset_of(path.name)].append(path)
    order: list[Path] = []
    for i in range(max((len(group) for group in by.values()), default=0)):
        order += [by[s][i] for s in SUBSETS if i < len(by[s])]
    return order


async def _streamed(local: Any, request: Any) -> tuple[Any, float, float | None]:
    """The generation, the seconds it took, and its seconds a token after the first chunk."""
    from agentkit.model_api import StreamChunk

    chunks: list[StreamChunk] = []
    started = time.perf_counter()
    first = last = 0.0
    async for chunk in local.stream(request):
        last = time.perf_counter()
        first = first or last
        chunks.append(chunk)
    generation = StreamChunk.join(chunks)
    tokens = generation.usage.completion_tokens
    per_token = (last - first) / (tokens - 1) if tokens > 1 else None
    return generation, last - started, per_token


class Asker:
    """Puts each schema to the local runtime: the free generation first, then the answer."""

    def __init__(self, local: Any, max_tokens: int) -> None:
        import jsonschema_rs

        self.local = local
        self.max_tokens = max_tokens
        self._validator_for = jsonschema_rs.validator_for
        # The runtime shows the schema in as much of half the context as it fits; the free
        # generation gets the same system message, so its tokens are counted here too.
        self._count = token_counter(local.model_path)

    def _fits(self, text: str) -> bool:
        return self._count(text) <= self.local.n_ctx // 2

    def ask(self, path: Path) -> Answer:
        from agentkit import Message, ModelRequest
        from agentkit.chat_formats import answer as answers
        from agentkit.errors import AgentKitError

        schema = json.loads(path.read_text())["schema"]
        answer = Answer(path.stem, subset_of(path.name), "error")
        response_format = {"type": "json_schema", "json_schema": schema}
        try:
            self.local.check_response_format(response_format)
        except AgentKitError as exc:
            answer.verdict, answer.reason = "refused", str(exc)
            return answer
        question = [Message.user(PROMPT)]
        told = answers.with_instructions(
            self.local.chat_format, question, response_format, self._fits
        )
        free = ModelRequest(messages=told, temperature=0.0, max_tokens=FREE_TOKENS)
        held = ModelRequest(
            messages=question,
            response_format=response_format,
            temperature=0.0,
            max_tokens=self.max_tokens,
        )
        try:
            _, _, answer.free_per_token = anyio.run(_streamed, self.local, free)
            generation, answer.seconds, answer.per_token = anyio.run(_streamed, self.local, held)
        except Exception as exc:  # noted and counted; one schema must not end a long run
            answer.reason = f"{type(exc).__name__}: {exc}"
            return answer
        answer.tokens = generation.usage.completion_tokens
        answer.truncated = generation.truncated
        answer.verdict, answer.reason = self._check(schema, generation.response)
        return answer

    def _check(self, schema: dict[str, Any], text: str) -> tuple[str, str]:
        try:
            value = json.loads(text)
        except ValueError as exc:
            return "invalid", f"not JSON ({exc}): {text[:120]!r}"
        try:
            validator = self._validator_for(schema)
        except Exception as exc:  # the validator's own limits, not the answer's
            return "error", f"the validator cannot read the schema: {exc}"
        for error in validator.iter_errors(value):
            where = "/".join(str(p) for p in error.instance_path) or "(root)"
            return "invalid", f"{where}: {error.message[:200]}"
        return "valid", ""


def _load(out: Path, settings: dict[str, Any]) -> dict[str, Answer]:
    """Answers a run with the same settings wrote to `out` before (it is started afresh when
    the settings differ)."""
    if not out.is_file():
        return {}
    lines = out.read_text().splitlines()
    if not lines or json.loads(lines[0]) != settings:
        out.unlink()
        return {}
    done = {}
    for line in lines[1:]:
        if line.strip():
            answer = Answer(**json.loads(line))
            done[answer.schema] = answer
    return done


def summarise(answers: list[Answer]) -> list[dict[str, Any]]:
    rows = []
    by: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        by[answer.subset].append(answer)
    for subset in [*[s for s in SUBSETS if by[s]], "all"]:
        group = answers if subset == "all" else by[subset]
        count: dict[str, int] = defaultdict(int)
        for answer in group:
            count[answer.verdict] += 1
        timed = [a for a in group if a.ratio is not None]
        ratios = [a.ratio for a in timed if a.ratio is not None]
        worst = max(timed, key=lambda a: a.ratio or 0.0) if timed else None
        per_token = [a.per_token for a in group if a.per_token is not None]
        rows.append(
            {
                "subset": subset,
                "schemas": len(group),
                "valid": count["valid"],
                "invalid": count["invalid"],
                "refused": count["refused"],
                "error": count["error"],
                "truncated": sum(a.truncated for a in group),
                "valid_share": count["valid"] / len(group),
                "ratio_median": statistics.median(ratios) if ratios else None,
                "ratio_max": worst.ratio if worst else None,
                "ratio_max_schema": worst.schema if worst else None,
                "tokens_per_s": 1 / statistics.median(per_token) if per_token else None,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| Subset | Schemas | Valid | Invalid | Refused | Error | Ended early | Valid share "
        "| Cost a token vs free, median / max | Tokens/s (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cost = (
            f"{r['ratio_median']:.2f}x / {r['ratio_max']:.2f}x ({r['ratio_max_schema']})"
            if r["ratio_median"] is not None
            else "-"
        )
        speed = f"{r['tokens_per_s']:.0f}" if r["tokens_per_s"] else "-"
        lines.append(
            f"| {r['subset']} | {r['schemas']} | {r['valid']} | {r['invalid']} | {r['refused']} "
            f"| {r['error']} | {r['truncated']} | {r['valid_share']:.1%} | {cost} | {speed} |"
        )
    return "\n".join(lines)


def checks(rows: list[dict[str, Any]], answers: list[Answer]) -> list[str]:
    """The targets, one line each: `met` or `MISSED` and the figure."""
    out = []
    for r in rows[:-1]:
        met = r["valid_share"] >= TARGET_VALID
        out.append(
            f"{'met' if met else 'MISSED'}: {r['subset']} valid >= {TARGET_VALID:.0%} "
            f"({r['valid']} of {r['schemas']}, {r['valid_share']:.1%})"
        )
    worst = rows[-1]
    if worst["ratio_max"] is not None:
        met = worst["ratio_max"] <= TARGET_RATIO
        out.append(
            f"{'met' if met else 'MISSED'}: no schema over {TARGET_RATIO:.0f}x free decoding a "
            f"token (the most: {worst['ratio_max']:.2f}x, {worst['ratio_max_schema']})"
        )
    context = [a.schema for a in answers if a.verdict == "refused" and "context" in a.reason]
    out.append(
        f"{'MISSED' if context else 'met'}: none refused for the context "
        f"({', '.join(context) or 'none'})"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answer_coverage")
    parser.add_argument("--quick", action="store_true", help="2 schemas per subset, no file")
    parser.add_argument("--sample", type=int, default=20, help="schemas per subset (seeded)")
    parser.add_argument("--all", action="store_true", help="every schema of the six subsets")
    parser.add_argument("--seed", type=int, default=2501)
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    parser.add_argument("--threads", type=int, help="decoding threads (default: every core)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT, help="per-schema results (resumed)")
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"no JSONSchemaBench data at {args.data}")
    sample = None if args.all else 2 if args.quick else args.sample
    files = interleaved(schema_files(args.data, sample, args.seed))
    from agentkit.runtimes.llama_cpp import LlamaCpp

    settings = {"sample": sample, "seed": args.seed, "max_tokens": args.max_tokens}
    done = {} if args.quick else _load(args.out, settings)
    out = None
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out = args.out.open("a")
        if not done:
            out.write(json.dumps(settings) + "\n")
    local = LlamaCpp(parallel=1, n_threads=args.threads)
    asker = Asker(local, args.max_tokens)
    answers: list[Answer] = []
    try:
        for i, path in enumerate(files, 1):
            answer = done.get(path.stem)
            if answer is None:
                answer = asker.ask(path)
                if out is not None:
                    out.write(json.dumps(asdict(answer)) + "\n")
                    out.flush()
                ratio = f"{answer.ratio:.2f}x" if answer.ratio is not None else "-"
                print(
                    f"[{i}/{len(files)}] {answer.schema}: {answer.verdict}, {answer.tokens} "
                    f"tokens, {ratio} {answer.reason[:100]}",
                    file=sys.stderr,
                    flush=True,
                )
            answers.append(answer)
    finally:
        if out is not None:
            out.close()
        anyio.run(local.aclose)
    rows = summarise(answers)
    print(table(rows))
    scope = f"a sample of {sample} per subset (seed {args.seed})" if sample else "every schema"
    print(f"\n{len(answers)} schemas: {scope}; greedy, max_tokens {args.max_tokens}.\n")
    print("\n".join(checks(rows, answers)))
    failures = [a for a in answers if a.verdict != "valid"]
    if failures:
        print("\nNot valid:")
        for a in failures:
            print(f"- {a.schema} ({a.verdict}): {a.reason[:240]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"rows": rows, "answers": [asdict(a) for a in answers]}, indent=2)
        )
    # Figures are reported, not asserted: a crash or a broken setup is the only failure.
    return 0


if __name__ == "__main__":
    sys.exit(main())
