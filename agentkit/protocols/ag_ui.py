"""AG-UI: an agent's runs streamed to a front end, as the AG-UI protocol's events.

Needs `pip install 'agentkit[agui]'` (the `ag-ui-protocol` package). `agentkit serve --agents
FILE` offers it at `POST /ag-ui`; `AGUIAdapter` puts it in an application of your own.

One request (a `RunAgentInput`: thread and run ids, the whole conversation, the tools the
front end offers) is one run of the agent, streamed as:

```
RUN_STARTED
  STEP_STARTED  TEXT_MESSAGE_START CONTENT* END                     the model's text
                (TOOL_CALL_START ARGS END)*  TOOL_CALL_RESULT*       the agent's own tools
  STEP_FINISHED ...
  (TOOL_CALL_START ARGS END)*                 the front end's tools, or calls awaiting approval
RUN_FINISHED | RUN_ERROR
```

The text and the tool calls of one step share one message id (the assistant message that
holds them). A call of a front end's tool ends the run: its `TOOL_CALL_*` events come last,
and `RUN_FINISHED` names it in `outcome.pendingToolCallIds`; the front end runs it and sends
the result as a `tool` message in its next request, which goes on from the conversation. A
call of the agent's own tool that waits for a person's approval ends the run with an
interrupt (`outcome.interrupts`, one per call); the next request's `resume` entries decide
them and the run goes on from where it stopped (`agentkit.protocols._ag_ui_interrupts`). A
failed run ends with `RUN_ERROR`: agentkit's own errors with their message (they never hold
secrets), anything else with a generic one (the detail is logged).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from pydantic_core import to_jsonable_python

from agentkit.agent import Agent, RunResult
from agentkit.agent.events import (
    Event,
    HandedOff,
    RunFinished,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from agentkit.agent.journaled import resumed
from agentkit.errors import AgentKitError, ConfigurationError
from agentkit.model_api import ToolCall

try:
    from ag_ui.core import (
        BaseEvent,
        CustomEvent,
        RunAgentInput,
        RunErrorEvent,
        RunFinishedEvent,
        RunFinishedInterruptOutcome,
        RunFinishedSuccessOutcome,
        RunStartedEvent,
        StepFinishedEvent,
        StepStartedEvent,
        TextMessageContentEvent,
        TextMessageEndEvent,
        TextMessageStartEvent,
        TokenUsage,
        ToolCallArgsEvent,
        ToolCallEndEvent,
        ToolCallResultEvent,
        ToolCallStartEvent,
    )
    from ag_ui.encoder import EventEncoder
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise ConfigurationError(
        "AG-UI support needs the ag-ui-protocol package: pip install 'agentkit[agui]'"
    ) from exc

from agentkit.protocols._ag_ui_input import (
    ClientToolset,
    client_tools,
    conversation,
    parse_run_input,
)
from agentkit.protocols._ag_ui_interrupts import PausedRuns

__all__ = ["MEDIA_TYPE", "AGUIAdapter", "PausedRuns"]

log = logging.getLogger("agentkit.protocols.ag_ui")

MEDIA_TYPE = "text/event-stream"
"""The media type of the stream `AGUIAdapter.frames` writes."""


class AGUIAdapter:
    """An agent behind the AG-UI protocol: a request's run input in, its run's events out.

    ```python
    adapter = AGUIAdapter(agent)
    run_input = adapter.parse(await request.json())  # 4xx on a RequestValidationError
    return StreamingResponse(adapter.frames(run_input), media_type=MEDIA_TYPE)
    ```

    An application that mounts it applies its own checks in front of it (who may call it,
    from which origin, how large a body); `agentkit serve` applies its own (see
    docs/server.md).

    Args:
        agent: the agent each request runs, as it is defined; the front end sends the
            conversation and may offer tools. An agent with tool sources (MCP servers) is
            entered (`async with agent:`) for as long as requests come.
        deps: makes a run's dependencies (`RunContext.deps`) from its run input, e.g. from
            its `state` or `forwarded_props`; without it a run has none.
        paused: where runs waiting for approval are kept until a request resumes them (by
            default at most 64, for 30 minutes each).
    """

    def __init__(
        self,
        agent: Agent[Any],
        *,
        deps: Callable[[RunAgentInput], Any] | None = None,
        paused: PausedRuns | None = None,
    ) -> None:
        self.agent = agent
        self.deps = deps
        self.paused = paused if paused is not None else PausedRuns()

    def parse(self, body: Mapping[str, Any]) -> RunAgentInput:
        """A request's JSON body as the protocol's run input, checked as a run will take it:
        its conversation (or, for a run that resumes, its decisions) and the tools its front
        end offers.

        Raises:
            RequestValidationError: naming each failing field as the wire spells it
                (`threadId`, `messages[0].content`) and the value given.
        """
        run_input = parse_run_input(body)
        if run_input.resume:
            self.paused.decide(run_input.resume, take=False)
        else:
            conversation(run_input)
        client_tools(run_input, self.agent.toolset, self.agent.runtime)
        return run_input

    async def events(self, run_input: RunAgentInput) -> AsyncGenerator[BaseEvent, None]:
        """The run of `run_input`, as AG-UI events; the last is `RUN_FINISHED` or `RUN_ERROR`.

        Raises:
            RequestValidationError: before the first event, for a run input `parse` did not
                check, whose conversation or offered tools cannot make a run.
        """
        agent = self.agent
        offered = client_tools(run_input, agent.toolset, agent.runtime)
        deps = self.deps(run_input) if self.deps is not None else None
        announced: set[str] = set()
        if run_input.resume:
            # The run goes on from its state; the conversation sent with it is the front
            # end's copy of the same.
            state, approve, deny = self.paused.decide(run_input.resume, take=True)
            run = await resumed(agent, state, approve, deny, None, deps)
            announced = {call.id for call in state.pending}
        else:
            run = agent.start(conversation(run_input), deps=deps)
        if offered:
            # The run's own setup, not the agent's: other runs of the agent never see them.
            run.setup = replace(run.setup, toolset=ClientToolset(run.setup.toolset, offered))
        names = {t.name: t.original_name for t in offered}
        stream = _Translator(run_input, names, self.paused, announced)
        yield RunStartedEvent(thread_id=run_input.thread_id, run_id=run_input.run_id)
        try:
            async with aclosing(run.events()) as events:
                async for event in events:
                    for made in stream.translate(event):
                        yield made
        except Exception as exc:
            for made in stream.interrupted():
                yield made
            yield _run_error(exc, run_input.run_id)

    async def frames(self, run_input: RunAgentInput) -> AsyncGenerator[bytes, None]:
        """`events` encoded as server-sent events, by the protocol package's encoder."""
        encoder = EventEncoder()
        async with aclosing(self.events(run_input)) as events:
            async for event in events:
                yield encoder.encode(event).encode()


def _new_id() -> str:
    return uuid.uuid4().hex


def _run_error(exc: Exception, run_id: str) -> RunErrorEvent:
    while len(getattr(exc, "exceptions", ())) == 1:  # a task group's wrapping of one error
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(exc, AgentKitError):
        # agentkit's errors build their own messages, and registered secrets never reach them.
        return RunErrorEvent(message=str(exc), code=type(exc).__name__)
    # Anything else may hold paths, prompts or secrets: its detail goes to the log only.
    log.error("AG-UI run %s failed", run_id, exc_info=exc)
    return RunErrorEvent(
        message=f"the run failed: the server's log has the detail (run {run_id})",
        code="internal_error",
    )


class _Translator:
    """agentkit events to AG-UI events, for one run."""

    def __init__(
        self,
        run_input: RunAgentInput,
        client_names: dict[str, str],
        paused: PausedRuns,
        announced: set[str],
    ) -> None:
        self.thread_id = run_input.thread_id
        self.run_id = run_input.run_id
        self.client_names = client_names
        """The front end's tools: the name the model sees -> the name the front end gave."""
        self.paused = paused
        self.announced = announced
        """Calls the front end has seen made (in the run that paused): only their results
        are sent."""
        self.open_text: str | None = None
        """The id of the text message being streamed, if one is."""
        self.step_messages: dict[int, str] = {}
        """Each step's assistant message id (its text and its tool calls)."""
        self.open_step: str | None = None
        """The name of the step under way, if one is."""

    def message_id(self, step: int) -> str:
        return self.step_messages.setdefault(step, _new_id())

    def translate(self, event: Event) -> list[BaseEvent]:
        if "/" in event.path:
            # An agent used as a tool: its run is inside its call, whose result is its answer.
            return []
        if isinstance(event, StepStarted):
            self.step_messages[event.step] = _new_id()
            self.open_step = _step_name(event.path, event.step)
            return [StepStartedEvent(step_name=self.open_step)]
        if isinstance(event, TextDelta):
            return self.text(event)
        if isinstance(event, ToolCallStarted):
            if event.call.id in self.announced:
                return self.end_text()
            self.announced.add(event.call.id)  # a tool that asks once started is not told again
            return [*self.end_text(), *self.call(event.call, event.step)]
        if isinstance(event, ToolCallFinished):
            record = event.record
            return [
                ToolCallResultEvent(
                    message_id=_new_id(),
                    tool_call_id=record.call.id,
                    content=record.error if record.error is not None else record.output or "",
                    role="tool",
                )
            ]
        if isinstance(event, StepFinished):
            if self.open_step is None:
                return self.end_text()  # the step a resumed run finishes began in another
            self.open_step = None
            return [
                *self.end_text(),
                StepFinishedEvent(step_name=_step_name(event.path, event.step)),
            ]
        if isinstance(event, HandedOff):
            value = {"source": event.source, "target": event.target, "back": event.back}
            return [CustomEvent(name="agentkit.handoff", value=value)]
        if isinstance(event, RunFinished):
            return [*self.end_text(), *self.finished(event.result)]
        return []  # PartialOutput: the text deltas already carry the answer's JSON

    def text(self, event: TextDelta) -> list[BaseEvent]:
        if not event.text:
            return []
        out: list[BaseEvent] = []
        if self.open_text is None:
            self.open_text = self.message_id(event.step)
            out.append(TextMessageStartEvent(message_id=self.open_text, role="assistant"))
        out.append(TextMessageContentEvent(message_id=self.open_text, delta=event.text))
        return out

    def end_text(self) -> list[BaseEvent]:
        if self.open_text is None:
            return []
        ended, self.open_text = self.open_text, None
        return [TextMessageEndEvent(message_id=ended)]

    def interrupted(self) -> list[BaseEvent]:
        """What closes the text message and the step a failure cut short."""
        out = self.end_text()
        if self.open_step is not None:
            out.append(StepFinishedEvent(step_name=self.open_step))
            self.open_step = None
        return out

    def call(self, call: ToolCall, step: int, name: str | None = None) -> list[BaseEvent]:
        return [
            ToolCallStartEvent(
                tool_call_id=call.id,
                tool_call_name=name or call.name,
                parent_message_id=self.message_id(step),
            ),
            ToolCallArgsEvent(tool_call_id=call.id, delta=call.arguments_json()),
            ToolCallEndEvent(tool_call_id=call.id),
        ]

    def finished(self, result: RunResult[Any]) -> list[BaseEvent]:
        usage = [
            TokenUsage(
                input_tokens=result.usage.prompt_tokens,
                output_tokens=result.usage.completion_tokens,
                total_tokens=result.usage.total_tokens,
            )
        ]
        if result.stop_reason != "approval":
            return [
                RunFinishedEvent(
                    thread_id=self.thread_id,
                    run_id=self.run_id,
                    result=to_jsonable_python(result.output, fallback=repr),
                    outcome=RunFinishedSuccessOutcome(),
                    usage=usage,
                )
            ]
        asking = sorted({p.name for p in result.pending if p.name not in self.client_names})
        out: list[BaseEvent] = []
        for pending in result.pending:
            if pending.id in self.announced:
                continue
            call = ToolCall(id=pending.id, name=pending.name, arguments=pending.arguments)
            out += self.call(call, pending.step, self.client_names.get(pending.name))
        if asking and any(p.name in self.client_names for p in result.pending):
            return [
                RunErrorEvent(
                    message=f"calls of {', '.join(asking)} wait for approval in the step that "
                    "calls the front end's tools; an AG-UI run cannot stop for both at once",
                    code="approval_required",
                )
            ]
        if asking:
            assert result.state is not None  # a run paused for approval has its state
            interrupted = RunFinishedInterruptOutcome(interrupts=self.paused.put(result.state))
            return [
                *out,
                RunFinishedEvent(
                    thread_id=self.thread_id, run_id=self.run_id, outcome=interrupted, usage=usage
                ),
            ]
        outcome = RunFinishedSuccessOutcome(pending_tool_call_ids=[p.id for p in result.pending])
        out.append(
            RunFinishedEvent(
                thread_id=self.thread_id, run_id=self.run_id, outcome=outcome, usage=usage
            )
        )
        return out


def _step_name(path: str, step: int) -> str:
    return f"{path} step {step}"
