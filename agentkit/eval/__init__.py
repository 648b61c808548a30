"""Evaluations: how well a model calls your tools, checked by BFCL's rules.

`Dataset.load` reads cases (agentkit's JSON Lines, or BFCL's files), `evaluate` runs them on a
runtime (one generation each) or an Agent (a whole run each) and checks every attempt, and the
`Report` says what passed, per category, and why the rest failed. `compare` sets two runs side
by side. See docs/eval.md.
"""

from agentkit.eval.answer import check_answer
from agentkit.eval.check import FailureKind, MadeCall, Verdict, check_call, check_calls, standardize
from agentkit.eval.compare import Comparison, compare
from agentkit.eval.dataset import (
    AnswerCheck,
    Case,
    Dataset,
    Expected,
    ExpectedCall,
    TrajectoryOrder,
)
from agentkit.eval.report import CategoryScore, Report
from agentkit.eval.results import CaseResult, Settings, read_results
from agentkit.eval.runner import evaluate, evaluate_sync

__all__ = [
    "AnswerCheck",
    "Case",
    "CaseResult",
    "CategoryScore",
    "Comparison",
    "Dataset",
    "Expected",
    "ExpectedCall",
    "FailureKind",
    "MadeCall",
    "Report",
    "Settings",
    "TrajectoryOrder",
    "Verdict",
    "check_answer",
    "check_call",
    "check_calls",
    "compare",
    "evaluate",
    "evaluate_sync",
    "read_results",
    "standardize",
]
