"""An evaluation's report: accuracy per category, failures grouped by kind, in the terminal, in
Markdown and in HTML."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agentkit.eval.results import CaseResult, Settings, read_results

__all__ = ["CategoryScore", "Report"]

_SHOWN_FAILURES = 20
"""Failures listed per kind in the Markdown and HTML reports (the JSON Lines have them all)."""


@dataclass(frozen=True)
class CategoryScore:
    """One category's accuracy."""

    category: str
    """The category (`all` for the whole set)."""
    passed: int
    """Attempts right."""
    total: int
    """Attempts made."""

    @property
    def accuracy(self) -> float:
        """`passed / total`; 0 with no attempt."""
        return self.passed / self.total if self.total else 0.0


class Report:
    """The results of one evaluation, in the dataset's order.

    Args:
        settings: what was evaluated, and how.
        results: one per case attempt.
        wall_seconds: how long the run took (what was run this time only).
        ran: attempts run this time (the others came from the output file).
        concurrency: attempts at once.
    """

    def __init__(
        self,
        settings: Settings,
        results: Sequence[CaseResult],
        *,
        wall_seconds: float = 0.0,
        ran: int | None = None,
        concurrency: int = 1,
    ) -> None:
        self.settings = settings
        self.results = list(results)
        self.wall_seconds = wall_seconds
        self.ran = len(self.results) if ran is None else ran
        self.concurrency = concurrency

    @classmethod
    def from_file(cls, path: str | Path) -> Report:
        """The report of an evaluation's JSON Lines output."""
        header, results = read_results(path)
        data = header.get("eval", {})
        settings = Settings(**{k: v for k, v in data.items() if k in Settings.__dataclass_fields__})
        return cls(settings, results, ran=0)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def accuracy(self) -> float:
        """The share of attempts that passed (0 with none)."""
        return self.passed / self.total if self.total else 0.0

    def by_category(self) -> list[CategoryScore]:
        """Each category's score, in order of first appearance, then `all`."""
        scores: dict[str, list[int]] = {}
        for result in self.results:
            tally = scores.setdefault(result.category, [0, 0])
            tally[0] += result.passed
            tally[1] += 1
        rows = [CategoryScore(c, p, t) for c, (p, t) in scores.items()]
        return [*rows, CategoryScore("all", self.passed, self.total)]

    def failures_by_kind(self) -> dict[str, list[CaseResult]]:
        """The failed attempts grouped by kind, the largest group first."""
        groups: dict[str, list[CaseResult]] = {}
        for result in self.results:
            if not result.passed:
                groups.setdefault(result.kind or "error", []).append(result)
        return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.results)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.results)

    @property
    def cost(self) -> float | None:
        """The total cost, when every attempt has one."""
        costs = [r.cost for r in self.results]
        return None if not costs or None in costs else sum(c for c in costs if c is not None)

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens a second over the run's wall time, when this run made them all."""
        if self.ran != self.total or self.wall_seconds <= 0 or not self.completion_tokens:
            return None
        return self.completion_tokens / self.wall_seconds

    def _facts(self) -> list[str]:
        s = self.settings
        facts = [
            f"{s.mode} on {s.runtime} ({s.model})",
            f"{self.total} attempts",
            f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens",
        ]
        if self.ran:
            facts.append(
                f"{self.ran} run now in {self.wall_seconds:.1f} s, {self.concurrency} at once"
            )
        if self.tokens_per_second is not None:
            facts.append(f"{self.tokens_per_second:.1f} completion tokens/s")
        if self.cost is not None:
            facts.append(f"cost {self.cost:.4f}")
        return facts

    def summary(self) -> str:
        """The terminal summary: accuracy per category, then failures by kind."""
        width = max([len(c.category) for c in self.by_category()] + [8])
        lines = [f"{'category':<{width}}  {'passed':>11}  accuracy"]
        for score in self.by_category():
            counts = f"{score.passed}/{score.total}"
            lines.append(f"{score.category:<{width}}  {counts:>11}  {100 * score.accuracy:7.1f}%")
        failures = self.failures_by_kind()
        if failures:
            kinds = ", ".join(f"{kind} {len(items)}" for kind, items in failures.items())
            lines.append(f"failures: {kinds}")
        lines.append("; ".join(self._facts()))
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A Markdown page: accuracy per category, the failures grouped by kind."""
        out = ["# Evaluation", "", "; ".join(self._facts()) + ".", ""]
        out += ["| category | passed | total | accuracy |", "|---|---:|---:|---:|"]
        for c in self.by_category():
            name = f"**{c.category}**" if c.category == "all" else c.category
            out.append(f"| {name} | {c.passed} | {c.total} | {100 * c.accuracy:.1f}% |")
        for kind, items in self.failures_by_kind().items():
            out += ["", f"## {kind} ({len(items)})", ""]
            for result in items[:_SHOWN_FAILURES]:
                reason = result.reason.replace("|", "\\|").replace("\n", " ")
                out.append(f"- `{result.key}` ({result.category}): {reason}")
            if len(items) > _SHOWN_FAILURES:
                out.append(f"- ... and {len(items) - _SHOWN_FAILURES} more (see the JSON Lines)")
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        """The same report as a standalone HTML page."""
        e = html.escape
        rows = "".join(
            f"<tr><td>{e(c.category)}</td><td>{c.passed}</td><td>{c.total}</td>"
            f"<td>{100 * c.accuracy:.1f}%</td></tr>"
            for c in self.by_category()
        )
        parts = [
            "<!doctype html><meta charset=utf-8><title>Evaluation</title>",
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}"
            "td:first-child{text-align:left}</style>",
            f"<h1>Evaluation</h1><p>{e('; '.join(self._facts()))}.</p>",
            "<table><tr><th>category</th><th>passed</th><th>total</th><th>accuracy</th></tr>",
            rows,
            "</table>",
        ]
        for kind, items in self.failures_by_kind().items():
            listed = "".join(
                f"<li><code>{e(r.key)}</code> ({e(r.category)}): {e(r.reason)}</li>"
                for r in items[:_SHOWN_FAILURES]
            )
            parts.append(f"<h2>{e(kind)} ({len(items)})</h2><ul>{listed}</ul>")
        return "".join(parts) + "\n"
