"""What one evaluation records: its settings, and a result per case attempt, kept as JSON Lines.

The output file's first line is the settings (`{"eval": {...}, "settings_hash": ...}`); each
further line is one attempt, written whole as soon as it finishes, so that a run stopped midway
loses only the attempts in flight. A rerun with the same file and settings keeps the attempts
already there (the same case, unchanged, without an error) and runs the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from agentkit.errors import UserError

__all__ = ["CaseResult", "ResultsFile", "Settings"]


@dataclass(frozen=True)
class Settings:
    """Everything that makes two evaluations comparable; its hash keys the results."""

    runtime: str
    """The runtime's name (`local`, `openai`, ...)."""
    model: str
    """The model it serves."""
    mode: str = "generation"
    """`generation` (one model call per case) or `agent` (a whole agent run)."""
    tool_choice: str | None = None
    """The tool choice of each generation (None: the runtime profile's)."""
    sampling: Mapping[str, Any] = field(default_factory=dict)
    """Sampling fields sent with every request (temperature, max_tokens, ...)."""
    repeats: int = 1
    """Attempts per case."""
    seed: int | None = None
    """The first attempt's seed; attempt `r` gets `seed + r`."""
    parallel_tool_calls: bool | None = None
    """Several calls in one generation allowed (True) or not (False) in every case; None: as
    each case says, else the runtime's default."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sampling"] = dict(sorted(self.sampling.items()))
        if self.parallel_tool_calls is None:
            del data["parallel_tool_calls"]  # files written before the setting existed match
        return data

    def digest(self) -> str:
        """A short hash of the settings."""
        text = json.dumps(self.to_json(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class CaseResult:
    """One attempt at one case."""

    id: str
    """The case's id."""
    category: str
    """The case's category."""
    repeat: int
    """Which attempt (0 for the first)."""
    passed: bool
    """The verdict."""
    kind: str | None = None
    """The kind of failure (`wrong_value`, `no_call`, ...), None when passed."""
    reason: str = ""
    """Why it failed, with the path (`arguments.city: "Paris" not in [...]`)."""
    calls: list[dict[str, Any]] = field(default_factory=list)
    """The calls made: `{name, arguments}` each."""
    answer: str = ""
    """The model's text."""
    seconds: float = 0.0
    """Wall time of the attempt."""
    prompt_tokens: int = 0
    """Prompt tokens used."""
    completion_tokens: int = 0
    """Completion tokens generated."""
    cost: float | None = None
    """What it cost, with a price given; None otherwise."""
    case_hash: str = ""
    """The case's fingerprint when it ran."""

    @property
    def key(self) -> str:
        """`id#repeat`: unique within one evaluation."""
        return f"{self.id}#{self.repeat}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class ResultsFile:
    """The JSON Lines output of an evaluation, appended to as attempts finish.

    Args:
        path: the file; made if missing.
        settings: this evaluation's settings. A file holding another evaluation's results is
            refused, so that one file never mixes two.

    Raises:
        UserError: the file belongs to an evaluation with other settings, or is not one.
    """

    def __init__(self, path: str | Path, settings: Settings) -> None:
        self.path = Path(path)
        self.settings = settings
        self.done: dict[str, CaseResult] = {}
        """Results already in the file, by key."""
        if self.path.exists() and self.path.stat().st_size:
            header, results = read_results(self.path, repair=True)
            if header.get("settings_hash") != settings.digest():
                raise UserError(
                    f"--output {self.path}: holds results of other settings "
                    f"({json.dumps(header.get('eval'))}); give another file to keep both, or "
                    "delete it to start again"
                )
            self.done = {r.key: r for r in results}
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = {"eval": settings.to_json(), "settings_hash": settings.digest()}
            self.path.write_text(json.dumps(header) + "\n")
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def append(self, result: CaseResult) -> None:
        """Write one result as one line, flushed at once."""
        self._file.write(json.dumps(result.to_json(), ensure_ascii=False, default=str) + "\n")
        self._file.flush()
        self.done[result.key] = result

    def close(self) -> None:
        self._file.close()


def read_results(
    path: str | Path, *, repair: bool = False
) -> tuple[dict[str, Any], list[CaseResult]]:
    """The header and results of an output file; the last result of each key wins.

    Args:
        path: an evaluation's JSON Lines output.
        repair: cut a last line left half written by an interrupted run.

    Raises:
        UserError: the file is missing or is not an evaluation's output.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    if text and not text.endswith("\n"):
        complete = text[: text.rfind("\n") + 1]
        if repair:
            path.write_text(complete, encoding="utf-8")
        text = complete
    lines = text.splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        header = {}
    if not isinstance(header, dict) or "settings_hash" not in header:
        raise UserError(f"{path}: not the output of `agentkit eval` (no settings on line 1)")
    results: dict[str, CaseResult] = {}
    for number, line in enumerate(lines[1:], 2):
        try:
            result = CaseResult.from_json(json.loads(line))
        except (json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"{path}:{number}: not a case result: {exc}") from None
        results[result.key] = result
    return header, list(results.values())
