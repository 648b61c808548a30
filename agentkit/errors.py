"""Every exception agentkit raises, in one tree.

```
AgentKitError
├── UserError                      the API was misused; fix the calling code
│   ├── ToolDefinitionError        a function or definition cannot become a tool
│   ├── RequestValidationError     a request breaks the contract (field, bound, value)
│   ├── UnsupportedFeature         the runtime cannot do what the request asks
│   ├── SchemaGrammarError         a schema keyword cannot be held by a grammar
│   ├── ConfigurationError         a runtime is not installed or not configured
│   ├── RunInterrupted             a session holds a run whose process stopped; continue it
│   └── RunStateError              a paused run cannot be resumed as asked
├── ToolArgumentsError             a model's arguments do not fit a tool
├── RunError                       a run stopped before an answer; carries the partial run
│   ├── MaxStepsExceeded
│   ├── DeadlineExceeded
│   ├── ToolRetriesExhausted
│   ├── RepeatedToolCall
│   ├── RunStopped                 a hook stopped the run (it raised StopRun)
│   ├── GuardrailTripped           a guardrail tripped on the input, a tool call or the answer
│   └── ModelBehaviorError
│       ├── TruncatedToolCall      a tool call cut off by max_tokens
│       └── OutputValidationError  the answer did not fit the output type, retries spent
└── TransportError                 talking to a model failed
    ├── ModelConnectionError
    ├── ModelTimeout
    ├── StreamInterrupted
    └── ModelHTTPError             the service answered with an error status
        ├── BadRequest             400
        ├── AuthError              401, 403
        ├── NotFound               404
        ├── RateLimited            429
        └── ServerError            5xx
```

`ToolRetry` and `ApprovalRequired` stand outside the tree: control flow raised by a tool, to
send a message back to the model or to ask a person, not errors.

Credentials never show in an error: a runtime registers its token with `register_secret` once,
and every agentkit error scrubs registered secrets from its message (`str`, `repr`, `args`) when
it is built, whatever path built it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AgentKitError",
    "ApprovalRequired",
    "AuthError",
    "BadRequest",
    "ConfigurationError",
    "DeadlineExceeded",
    "FieldError",
    "GuardrailTripped",
    "MaxStepsExceeded",
    "ModelBehaviorError",
    "ModelConnectionError",
    "ModelHTTPError",
    "ModelTimeout",
    "NotFound",
    "OutputValidationError",
    "RateLimited",
    "RepeatedToolCall",
    "RequestValidationError",
    "RunError",
    "RunInterrupted",
    "RunStateError",
    "RunStopped",
    "SchemaGrammarError",
    "ServerError",
    "StopRun",
    "StreamInterrupted",
    "ToolArgumentsError",
    "ToolDefinitionError",
    "ToolRetriesExhausted",
    "ToolRetry",
    "TransportError",
    "TruncatedToolCall",
    "UnsupportedFeature",
    "UserError",
    "redact",
    "register_secret",
]

REDACTED = "[redacted]"
_PIECE = 8  # the shortest secret, and the shortest piece of one, that is scrubbed
_secrets: dict[str, None] = {}  # an ordered set


def register_secret(value: str | None) -> None:
    """Keep `value` (an API token) out of every agentkit error built from now on.

    Values shorter than 8 characters are not registered: scrubbing them would mangle ordinary
    words, and no real token is that short.
    """
    if value and len(value) >= _PIECE:
        _secrets[value] = None


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `[redacted]`; so is a piece of one
    (its first or last 8 characters or more), as in an excerpt cut off inside an echoed token.
    """
    spans = sorted(span for secret in _secrets for span in _pieces(text, secret))
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, stop in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    out, end = [], 0
    for start, stop in merged:
        out += [text[end:start], REDACTED]
        end = stop
    out.append(text[end:])
    return "".join(out)


def _pieces(text: str, secret: str) -> list[tuple[int, int]]:
    """Where `text` holds `secret`, or a head or tail of it of at least `_PIECE` characters."""
    found: list[tuple[int, int]] = []
    head, tail = secret[:_PIECE], secret[-_PIECE:]
    at = text.find(head)
    while at != -1:
        stop = at + _PIECE
        while stop < len(text) and stop - at < len(secret) and text[stop] == secret[stop - at]:
            stop += 1
        found.append((at, stop))
        at = text.find(head, stop)
    at = text.find(tail)
    while at != -1:
        start, stop = at, at + _PIECE
        while (
            start > 0 and stop - start < len(secret) and text[start - 1] == secret[start - stop - 1]
        ):
            start -= 1
        found.append((start, stop))
        at = text.find(tail, stop)
    return found


@dataclass(frozen=True)
class FieldError:
    """One failing field: where, what is wrong, and the value that was given."""

    path: str
    """Dotted path with list indices, e.g. `messages[0].content`; empty for the whole value."""
    message: str
    """What is wrong, with the bound and the value, e.g. `must be <= 5 (got 6)`."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _join(errors: Sequence[FieldError]) -> str:
    return "; ".join(str(e) for e in errors)


class AgentKitError(Exception):
    """Base of every error agentkit raises; registered secrets never reach its message."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class UserError(AgentKitError):
    """The API was used in a way it cannot work; the message says how to fix it."""


class ToolDefinitionError(UserError):
    """A function or a foreign definition cannot become a tool."""

    def __init__(self, tool: str, problems: Sequence[str]) -> None:
        self.tool = tool
        self.problems = list(problems)
        super().__init__(f"tool {tool!r}: " + "; ".join(self.problems))


class RequestValidationError(UserError):
    """A request breaks the contract; `errors` lists every failing field."""

    def __init__(self, errors: Sequence[FieldError], what: str = "request") -> None:
        self.errors = list(errors)
        self.what = what
        super().__init__(f"invalid {what}: {_join(self.errors)}")


class UnsupportedFeature(UserError):
    """The runtime cannot honour a field of the request."""

    def __init__(self, feature: str, runtime: str, reason: str) -> None:
        self.feature = feature
        self.runtime = runtime
        self.reason = reason
        super().__init__(f"{feature}: not supported by the {runtime} runtime: {reason}")


class SchemaGrammarError(UserError, ValueError):
    """A schema keyword cannot be held by a grammar; names the keyword and its JSON path."""

    def __init__(self, path: str, keyword: str, reason: str) -> None:
        self.path = path
        self.keyword = keyword
        self.reason = reason
        super().__init__(f"{path}: keyword {keyword!r} {reason}")


class ConfigurationError(UserError):
    """A runtime is missing an optional dependency, a setting or a file."""


class RunInterrupted(UserError):
    """A session holds a run whose process stopped mid-run: continue it (a run with the session
    and no prompt) before starting another."""

    def __init__(self, session_id: str, run_id: str) -> None:
        self.session_id = session_id
        self.run_id = run_id
        super().__init__(
            f"session {session_id!r} holds run {run_id}, interrupted when its process stopped; "
            "continue it first: agent.run(session=...) without a prompt (or drop it: "
            "agentkit.sessions.discard_interrupted)"
        )


class RunStateError(UserError):
    """A paused run (`RunState`) cannot be resumed as asked: decisions that do not match its
    pending calls, a state already resumed, an unknown version, or an agent configured
    differently from the one that paused it. `problems` names each difference."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("cannot resume this run: " + "; ".join(self.problems))


class ToolArgumentsError(AgentKitError):
    """A model's arguments do not fit the tool; `errors` lists every failing field."""

    def __init__(self, tool: str, errors: Sequence[FieldError], raw: str | None = None) -> None:
        self.tool = tool
        self.errors = list(errors)
        self.raw = raw
        super().__init__(f"invalid arguments for {tool}: {_join(self.errors)}")


class ToolRetry(Exception):  # control flow, named for what the tool asks
    """Raised by a tool to send `message` back to the model and let it try again."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class ApprovalRequired(Exception):  # control flow, named for what the tool asks
    """Raised by a tool while it runs to ask a person: the run pauses for approval with the
    call pending and `question` shown; on resume the tool is called again with the same
    arguments, the decision in its `RunContext.decision` (see docs/approval.md).

    Args:
        question: what the person is asked.
        data: JSON data the tool keeps to go on, handed back with the decision.

    Raises:
        TypeError: `question` is not text, or `data` is not JSON data.
    """

    def __init__(self, question: str, *, data: Any = None) -> None:
        if not isinstance(question, str):
            raise TypeError(f"question: expected text (got {type(question).__name__})")
        try:
            # Kept as its JSON round trip: what a resume in another process reads back.
            self.data = json.loads(json.dumps(data, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"data: must be JSON data ({exc})") from None
        self.question = question
        super().__init__(question)


class StopRun(Exception):  # control flow, named for what the hook asks
    """Raised by a run hook (`agentkit.RunHooks`) to stop the run; the run raises
    `RunStopped` with `message` and the partial run."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class RunError(AgentKitError):
    """A run stopped without an answer. `run` holds everything that happened until then: the
    partial `agentkit.RunResult` (typed loosely here, below the agent that makes it)."""

    run: Any

    def __init__(self, message: str, run: Any = None) -> None:
        self.run = run
        super().__init__(message)


class MaxStepsExceeded(RunError):
    """The model was still calling tools after `max_steps` steps."""

    def __init__(self, max_steps: int, run: Any = None) -> None:
        self.max_steps = max_steps
        super().__init__(f"no answer after max_steps={max_steps} steps", run)


class DeadlineExceeded(RunError):
    """The whole run took longer than its deadline."""

    def __init__(self, deadline: float, run: Any = None) -> None:
        self.deadline = deadline
        super().__init__(f"run exceeded its deadline of {deadline:g} s", run)


class ToolRetriesExhausted(RunError):
    """A tool kept receiving invalid arguments (or asking to retry) beyond its budget."""

    def __init__(self, tool: str, retries: int, last_error: str, run: Any = None):
        self.tool = tool
        self.retries = retries
        self.last_error = last_error
        super().__init__(
            f"tool {tool!r} failed after {retries} retries; last error: {last_error}", run
        )


class RepeatedToolCall(RunError):
    """The model repeated the same call even after being told it was repeating itself."""

    def __init__(self, tool: str, arguments: dict[str, Any], times: int, run: Any = None):
        self.tool = tool
        self.arguments = arguments
        self.times = times
        super().__init__(
            f"the model called {tool} with the same arguments {times} times in a row", run
        )


class RunStopped(RunError):
    """A hook stopped the run (it raised `StopRun`); `reason` is the hook's message."""

    def __init__(self, reason: str, run: Any = None) -> None:
        self.reason = reason
        super().__init__(f"a hook stopped the run: {reason}", run)


class GuardrailTripped(RunError):
    """A guardrail tripped: on the user's input (`kind == "input"`), on a tool call or its
    result (`"tool"`, with `tool` the tool's name) or on the final answer (`"output"`).
    `output` is what the guardrail said (a `Verdict`, for an agent used as one); `run` the
    partial run, with the answer in it for an output guardrail."""

    def __init__(
        self,
        guardrail: str,
        kind: str,
        output: Any = None,
        tool: str | None = None,
        run: Any = None,
    ) -> None:
        self.guardrail = guardrail
        self.kind = kind
        self.output = output
        self.tool = tool
        what = f"a call of {tool!r}" if tool is not None else f"the {kind}"
        detail = output if isinstance(output, str) else getattr(output, "reason", None)
        said = f": {detail}" if isinstance(detail, str) and detail else ""
        super().__init__(f"guardrail {guardrail!r} tripped on {what}{said}", run)


class ModelBehaviorError(RunError):
    """The model answered in a way the run cannot use."""


class TruncatedToolCall(ModelBehaviorError):
    """The generation reached `max_tokens` in the middle of a tool call: the call is
    incomplete, and it is no answer either. Raise `max_tokens` (or simplify the tool)."""

    def __init__(self, max_tokens: int | None, text: str, run: Any = None) -> None:
        self.max_tokens = max_tokens
        self.text = text
        """The cut-off generation."""
        super().__init__(
            f"the model's tool call was cut off at max_tokens={max_tokens} before it was "
            f"complete; raise max_tokens. It ended: {text[-120:]!r}",
            run,
        )


class OutputValidationError(ModelBehaviorError):
    """The final answer did not fit the Agent's `output_type`, after `retries` attempts to
    have the model fix it. `errors` names each failing field; `text` is the last answer."""

    def __init__(
        self,
        errors: Sequence[FieldError],
        text: str,
        retries: int,
        run: Any = None,
    ) -> None:
        self.errors = list(errors)
        self.text = text
        self.retries = retries
        shown = text if len(text) <= 200 else text[:197] + "..."
        super().__init__(
            f"the answer does not fit the output type after {retries} "
            f"{'retry' if retries == 1 else 'retries'}: {_join(self.errors)}. "
            f"It was: {shown!r}",
            run,
        )


class TransportError(AgentKitError):
    """Talking to a model service failed. Never carries credentials."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retryable: bool = False,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message = redact(message)
        self.retryable = retryable
        parts = [str(p) for p in (f"HTTP {status}" if status else None, code) if p]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        super().__init__(prefix + message)


class ModelConnectionError(TransportError):
    """The service could not be reached."""


class ModelTimeout(TransportError):
    """The service did not answer in time."""


class StreamInterrupted(TransportError):
    """A stream ended before its end marker: the answer is incomplete."""


class ModelHTTPError(TransportError):
    """The service answered with an error status."""


class BadRequest(ModelHTTPError):
    """HTTP 400: the service rejected the request."""


class AuthError(ModelHTTPError):
    """HTTP 401 or 403: the token is missing, wrong or lacks permission."""


class NotFound(ModelHTTPError):
    """HTTP 404: no such model, account or route."""


class RateLimited(ModelHTTPError):
    """HTTP 429: too many requests, or the service is out of capacity."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        code: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, code=code, retryable=retryable)


class ServerError(ModelHTTPError):
    """HTTP 5xx: the service failed."""
