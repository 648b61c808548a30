"""Two evaluations side by side: the cases that changed, and how sure the difference is.

The interval is on the paired difference in accuracy: for each case both ran, `d = b - a`
where `a` and `b` are the case's pass rates (1 or 0 with one attempt, the mean over repeats
otherwise); the difference is the mean of `d`, and its 95% interval the normal approximation
`mean ± 1.96 · sd(d) / √n` (sd with n - 1), clipped to [-1, 1]. Pairing is what makes it
tight: cases both runs get right, or both get wrong, add no noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agentkit.eval.report import Report

__all__ = ["Comparison", "compare"]

_Z95 = 1.959964


@dataclass(frozen=True)
class Comparison:
    """Run A against run B."""

    a: Report
    """The baseline."""
    b: Report
    """The candidate."""
    paired: int
    """Cases both ran."""
    fixed: list[str]
    """Case ids failing in A, passing in B (by pass rate: higher in B)."""
    broken: list[str]
    """Case ids passing in A, failing in B (lower in B)."""
    difference: float
    """Mean paired difference in accuracy, B - A (over the paired cases)."""
    interval: tuple[float, float] | None
    """Its 95% interval; None with fewer than two paired cases."""

    def to_text(self) -> str:
        """Side by side per category, the changed cases, the difference and its interval."""
        a_scores = {c.category: c for c in self.a.by_category()}
        b_scores = {c.category: c for c in self.b.by_category()}
        names = list(dict.fromkeys([*a_scores, *b_scores]))
        width = max([len(n) for n in names] + [8])
        lines = [f"{'category':<{width}}  {'A':>14}  {'B':>14}"]
        for name in names:
            cells = []
            for scores in (a_scores, b_scores):
                s = scores.get(name)
                cells.append(f"{s.passed}/{s.total} {100 * s.accuracy:5.1f}%" if s else "-")
            lines.append(f"{name:<{width}}  {cells[0]:>14}  {cells[1]:>14}")
        reasons = {r.id: r.reason for r in self.b.results if not r.passed}
        lines.append(f"pass -> fail: {len(self.broken)}")
        lines += [f"  {case}: {reasons.get(case, '')}" for case in self.broken]
        lines.append(f"fail -> pass: {len(self.fixed)}")
        lines += [f"  {case}" for case in self.fixed]
        diff = f"{100 * self.difference:+.1f} points"
        if self.interval is None:
            lines.append(f"difference B - A: {diff} over {self.paired} paired cases")
        else:
            low, high = self.interval
            lines.append(
                f"difference B - A: {diff}, 95% interval [{100 * low:+.1f}, {100 * high:+.1f}] "
                f"over {self.paired} paired cases (normal approximation on paired differences)"
            )
        return "\n".join(lines)


def _rates(report: Report) -> dict[str, float]:
    tally: dict[str, list[int]] = {}
    for result in report.results:
        counts = tally.setdefault(result.id, [0, 0])
        counts[0] += result.passed
        counts[1] += 1
    return {case: p / n for case, (p, n) in tally.items()}


def compare(a: Report, b: Report) -> Comparison:
    """Compare two evaluations case by case (by case id)."""
    rates_a, rates_b = _rates(a), _rates(b)
    common = [case for case in rates_a if case in rates_b]
    diffs = [rates_b[c] - rates_a[c] for c in common]
    fixed = [c for c in common if rates_b[c] > rates_a[c]]
    broken = [c for c in common if rates_b[c] < rates_a[c]]
    n = len(diffs)
    mean = sum(diffs) / n if n else 0.0
    interval = None
    if n >= 2:
        variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
        half = _Z95 * math.sqrt(variance / n)
        # A difference in accuracy lies in [-1, 1]; the approximation may spill over.
        interval = (max(-1.0, mean - half), min(1.0, mean + half))
    return Comparison(a, b, n, fixed, broken, mean, interval)
