"""The Agent: settings, tools and a model, and the entry points that make a run of them
(`run`, `run_sync`, `stream`, `iter`, `resume`, `resume_sync`, `stream_resume`).

A run itself is an `AgentRun` (`agentkit.agent.run`); a run with a session is journaled into it
(`agentkit.agent.journaled`).
"""

from __future__ import annotations

import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager
from functools import partial
from types import TracebackType
from typing import Any, Generic, overload

import anyio
from pydantic import ValidationError
from typing_extensions import Unpack

from agentkit.agent.approval import fingerprint
from agentkit.agent.core import Setup, step_request
from agentkit.agent.events import Event
from agentkit.agent.guardrail_hooks import Guardrails
from agentkit.agent.guardrails import Guardrail
from agentkit.agent.handoffs import Handoff, new_trail, offer
from agentkit.agent.hooks import HookSet, RunHooks
from agentkit.agent.journaled import open_run, resumed
from agentkit.agent.output import output_spec
from agentkit.agent.results import OutputT, RunResult, RunState
from agentkit.agent.run import AgentRun
from agentkit.agent.settings import AgentSettings, settings_error, settled_tool_choice
from agentkit.agent.subagent import agent_tool
from agentkit.errors import UserError
from agentkit.model_api import Message, ModelRequest
from agentkit.runtimes import get_runtime
from agentkit.runtimes.base import Runtime
from agentkit.sessions import Session
from agentkit.tools import Tool, ToolOptions, Toolset, ToolSource
from agentkit.usage import PriceTable, check_prices, model_name
from agentkit.wire.workers_ai import GenerationRequest

__all__ = ["Agent"]

Prompt = str | Sequence[Message] | None
ToolLike = Tool | ToolSource | Callable[..., Any]


class Agent(Generic[OutputT]):
    """A model, some tools and the loop between them.

    Args:
        runtime: a `Runtime`, or a runtime's name (`"local"`, `"workers-ai"`, `"openai"`); a
            runtime made from a name belongs to the Agent, which closes it in `aclose`.
        tools: `Tool`s, plain functions (wrapped with `@tool`) and tool sources such as MCP
            servers (`agentkit.mcp`), started when the agent is entered (`async with agent:`)
            or, if it is not, for each run.
        instructions: the system message.
        max_steps: model calls allowed before the run stops with `MaxStepsExceeded`.
        final_answer_on_max_steps: instead of raising, make one last call without tools.
        deadline: seconds the whole run may take; past it `DeadlineExceeded` is raised.
        max_concurrency: tool calls running at once (sync tools take worker threads).
        tool_timeout: seconds a tool call may take, unless the tool sets its own `timeout`.
        max_tool_retries: failed calls a tool may have in a row (bad arguments, `ToolRetry`,
            an exception, a timeout), unless it sets its own `max_retries`; one more stops the
            run with `ToolRetriesExhausted`. Repeated identical calls are bounded by
            `repeat_limit` instead and do not count here.
        raise_tool_errors: re-raise an exception from a tool instead of telling the model.
        max_tool_output: characters of a tool's output sent to the model; the rest is cut
            from the middle (the run record keeps it whole).
        repeat_limit: identical consecutive calls that earn a nudge; one more stops the run.
        tool_choice: `auto`, `required`, `none` or a tool's name; None takes the runtime's
            profile (`auto`, or `required` for a model too small to decide by itself).
        reset_tool_choice: once the tools have answered, go back to `auto` for the rest of the
            run, so that a forced choice (`required`, a name) cannot loop forever.
        name: the agent's name, in traces (`invoke_agent {name}`).
        prices: model names to `ModelPrice`s (per million tokens), so that `RunResult.cost`
            can say what a run cost.
        output_type: the type of the final answer, instead of text: a pydantic model, a
            dataclass, a TypedDict, a scalar or `list[...]` type, or a JSON Schema dict (its
            value returned as parsed JSON). `RunResult.output` is then the validated value
            (see docs/structured-output.md); a schema the runtime cannot hold its model to
            fails here, naming the keyword and its path.
        max_output_retries: answers that do not fit `output_type` the model is told about
            and may fix; one more raises `OutputValidationError`.
        hooks: `RunHooks` that every run of this agent reaches (see `agentkit.agent.hooks`).
        guardrails: `InputGuardrail`s, `OutputGuardrail`s and `ToolGuardrail`s: checks of
            the input, the answer and tool calls that may stop a run with `GuardrailTripped`
            (see `agentkit.agent.guardrails`).
        handoffs: agents (or `handoff(agent, ...)`s) the model may hand the run over to, for
            the rest of it, with a `transfer_to_<name>` tool (see docs/multi-agent.md).
        max_handoffs: handoffs a run may make; past it a transfer is a failed call.
        clock: where tool call durations are read from (a durable workflow passes its own).
        telemetry: report runs to OpenTelemetry when it is configured (see
            docs/observability.md); a durable workflow turns it off (its calls are traced
            where they run).
        settings: the settings above as one `AgentSettings` (instead of keywords).
        **sampling: request fields sent with every call (`temperature`, `max_tokens`, ...),
            over the runtime profile's own.

    A generation cut off by `max_tokens` in the middle of a tool call raises
    `TruncatedToolCall`; a final answer cut off by it sets `RunResult.truncated`.

    `toolset` may change between runs (`agent.toolset.add(fn)`); each run sends the tools it
    holds then.

    A call of a tool marked `requires_approval` pauses the run (`stop_reason == "approval"`);
    `resume`, `resume_sync` and `stream_resume` continue it (see `agentkit.agent.approval`).

    Every entry point takes `deps`: the run's dependencies, which tools taking a `RunContext`
    and hooks receive (`ctx.deps`). They are never serialised: a resumed run, or one continued
    from a session, gets the `deps` of the call that continues it.
    """

    @overload
    def __init__(
        self: Agent[Any],
        runtime: Runtime | str,
        tools: Iterable[ToolLike] = (),
        *,
        output_type: Mapping[str, Any],
        **options: Any,
    ) -> None: ...

    @overload
    def __init__(
        self,
        runtime: Runtime | str,
        tools: Iterable[ToolLike] = (),
        *,
        output_type: type[OutputT] | None = None,
        max_output_retries: int = 1,
        instructions: str | None = None,
        max_steps: int = 10,
        final_answer_on_max_steps: bool = False,
        deadline: float | None = None,
        max_concurrency: int = 8,
        tool_timeout: float | None = None,
        max_tool_retries: int = 2,
        raise_tool_errors: bool = False,
        max_tool_output: int = 20_000,
        repeat_limit: int = 3,
        tool_choice: str | None = None,
        reset_tool_choice: bool = True,
        name: str | None = None,
        prices: PriceTable | None = None,
        hooks: Iterable[RunHooks[Any]] = (),
        guardrails: Iterable[Guardrail] = (),
        handoffs: Iterable[Agent[Any] | Handoff] = (),
        max_handoffs: int = 5,
        clock: Callable[[], float] = time.perf_counter,
        telemetry: bool = True,
        settings: AgentSettings | None = None,
        **sampling: Any,
    ) -> None: ...

    def __init__(
        self,
        runtime: Runtime | str,
        tools: Iterable[ToolLike] = (),
        *,
        output_type: Any = None,
        prices: PriceTable | None = None,
        hooks: Iterable[RunHooks[Any]] = (),
        guardrails: Iterable[Guardrail] = (),
        handoffs: Iterable[Agent[Any] | Handoff] = (),
        clock: Callable[[], float] = time.perf_counter,
        telemetry: bool = True,
        settings: AgentSettings | None = None,
        **options: Any,
    ) -> None:
        if settings is None:
            known = AgentSettings.model_fields
            given = {k: v for k, v in options.items() if k in known}
            sampling = {k: v for k, v in options.items() if k not in known}
            try:
                settings = AgentSettings(**given, sampling=sampling)
            except ValidationError as exc:
                raise settings_error(exc) from None
        elif options:
            raise UserError(f"pass settings or keyword settings, not both: {sorted(options)}")
        self._owns_runtime = isinstance(runtime, str)
        self.runtime = get_runtime(runtime) if isinstance(runtime, str) else runtime
        self.toolset = tools if isinstance(tools, Toolset) else Toolset(tools)
        self.handoffs, self._reachable = offer(self, settings.name, self.toolset, handoffs)
        self.instructions = settings.instructions
        self.name = settings.name
        self.prices = check_prices(prices)
        self._guardrails = Guardrails(guardrails, self.toolset)
        self.hooks = HookSet([*hooks, *self._guardrails.hooks])
        self.clock = clock
        self.telemetry = telemetry
        self._model = model_name(self.runtime)
        profile = self.runtime.profile
        tool_choice = settled_tool_choice(settings.tool_choice, self.toolset, profile.tool_choice)
        self.settings = settings
        # Validated once here; every step reuses the fields without validating them again.
        # The settings are checked against the contract's bounds, the user's over the profile's.
        fields = {**profile.sampling, **settings.sampling, "tool_choice": tool_choice}
        template = GenerationRequest.build({"messages": [], **fields}).to_model(self.runtime.name)
        self._fields = template.model_dump(exclude={"messages", "tools", "raw_prompt"})
        self._dialect = self.runtime.capabilities.schema_dialect
        # Built now, so a broken tool, or one the runtime cannot offer, fails here.
        self.runtime.check_tools(self.toolset.definitions(self._dialect))
        self.output_type = output_type
        self._output = output_spec(
            output_type, self.runtime, max_retries=settings.max_output_retries
        )
        if self._output is not None:
            if self._fields.get("response_format") is not None:
                raise UserError("pass output_type or response_format, not both")
            if self._output.enforced:
                self._fields["response_format"] = self._output.response_format
        self._template = ModelRequest.model_construct(messages=[], tools=[], **self._fields)
        self._setup: Setup | None = None
        self._entered = 0

    # -- runs -------------------------------------------------------------------------------

    async def run(
        self,
        prompt: Prompt = None,
        *,
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        session: Session | None = None,
        deps: Any = None,
    ) -> RunResult[OutputT]:
        """Run until the model answers.

        Args:
            prompt: the user's message, or messages to append after `history`. None, with a
                session, continues the session's interrupted run (see docs/sessions.md).
            history: an earlier transcript to continue (e.g. `previous.messages`); not changed.
            transcript: instead of `history`, a list the run appends to in place as it goes.
                It stays a valid conversation (every tool call answered) even when the run is
                cancelled or stops with an error.
            session: a `Session` (`agentkit.sessions`): the run starts from its conversation
                and journals each step into it as it completes.
            deps: the run's dependencies, for tools taking a `RunContext` and for hooks.

        Raises:
            RunError: a limit stopped the run, or the answer did not fit `output_type`
                (`OutputValidationError`), or a hook stopped it (`RunStopped`); `.run` holds
                the partial `RunResult`.
            RunInterrupted: the session holds an interrupted run; continue it first.
        """
        run = await self._begin(prompt, history, transcript, session, deps)
        return await run.execute()

    def run_sync(
        self,
        prompt: Prompt = None,
        *,
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        session: Session | None = None,
        deps: Any = None,
    ) -> RunResult[OutputT]:
        """`run` for code that has no event loop."""
        run = partial(
            self.run, prompt, history=history, transcript=transcript, session=session, deps=deps
        )
        return anyio.run(run)

    async def stream(
        self,
        prompt: Prompt = None,
        *,
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        session: Session | None = None,
        deps: Any = None,
    ) -> AsyncGenerator[Event, None]:
        """Run, yielding typed events as they happen; the last one is `RunFinished`. With an
        `output_type`, `PartialOutput` events show the answer as its JSON grows.

        Use it as `async with contextlib.aclosing(agent.stream(...)) as events:` when you may
        stop early, so the run is cancelled cleanly.
        """
        run = await self._begin(prompt, history, transcript, session, deps)
        async with aclosing(run.events()) as events:
            async for event in events:
                yield event

    @asynccontextmanager
    async def iter(
        self,
        prompt: Prompt = None,
        *,
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        session: Session | None = None,
        deps: Any = None,
    ) -> AsyncIterator[AgentRun[OutputT]]:
        """A run to step through, node by node (see `AgentRun`): `run.result` is then what
        `run` gives (`stop_reason == "stopped"` if the block is left early)."""
        run = await self._begin(prompt, history, transcript, session, deps)
        async with run:
            yield run

    async def resume(
        self,
        state: RunState,
        *,
        approve: Collection[str] = (),
        deny: Mapping[str, str] | None = None,
        session: Session | None = None,
        deps: Any = None,
    ) -> RunResult[OutputT]:
        """Continue a run that paused for approval (`result.state`), with a decision on each
        pending call.

        Args:
            state: the paused run (`result.state`, or `RunState.from_json(text)`).
            approve: ids of the calls to run.
            deny: ids of the calls not to run, with the reason the model is told (the call's
                result is the error `denied by the user: <reason>`; an empty reason says only
                `denied by the user`).
            session: the session the run paused in, if it ran with one: the resumed run
                journals into it as the same run (see docs/sessions.md).
            deps: the resumed run's dependencies (those of the paused run are not kept).

        Every pending call must be decided. The run goes on from where it stopped, with this
        agent's limits (a fresh `deadline`; `max_steps` counts the steps already made), and
        may pause again.

        Raises:
            RunStateError: an id that is not pending, an undecided call, a state already
                resumed in this process, or an agent that differs from the one that paused
                (a tool missing or changed, another output type): each is named.
            RunError: a limit stopped the resumed run, as in `run`.
        """
        run = await resumed(self, state, approve, deny, session, deps)
        return await run.execute()

    def resume_sync(
        self,
        state: RunState,
        *,
        approve: Collection[str] = (),
        deny: Mapping[str, str] | None = None,
        session: Session | None = None,
        deps: Any = None,
    ) -> RunResult[OutputT]:
        """`resume` for code that has no event loop."""
        resume = partial(self.resume, state, approve=approve, deny=deny, session=session, deps=deps)
        return anyio.run(resume)

    async def stream_resume(
        self,
        state: RunState,
        *,
        approve: Collection[str] = (),
        deny: Mapping[str, str] | None = None,
        session: Session | None = None,
        deps: Any = None,
    ) -> AsyncGenerator[Event, None]:
        """`resume`, yielding events as `stream` does (a denied call has only its
        `ToolCallFinished`); the last event is `RunFinished`."""
        run = await resumed(self, state, approve, deny, session, deps)
        async with aclosing(run.events()) as events:
            async for event in events:
                yield event

    def as_tool(
        self,
        name: str | None = None,
        *,
        description: str,
        input_type: type[Any] | None = None,
        **options: Unpack[ToolOptions],
    ) -> Tool:
        """This agent as a tool of other agents: a call runs it on the `input` text the
        calling model writes (or, with `input_type`, a model, dataclass or TypedDict, on
        its fields as JSON) and answers with its output; `name` defaults to the agent's, and
        `options` are those of `@tool`. See `agentkit.agent.subagent` and docs/multi-agent.md.
        """
        return agent_tool(self, name, description, input_type, options)

    # -- lifetime ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the runtime if the Agent made it (from a name); one passed in stays open."""
        if self._owns_runtime:
            await self.runtime.aclose()

    async def __aenter__(self) -> Agent[OutputT]:
        """Start the tool sources (MCP servers) for every run until the block ends."""
        try:
            await self.toolset.__aenter__()
        except BaseException:
            await self.aclose()
            raise
        self._entered += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the tool sources, then close the runtime if the Agent made it."""
        self._entered -= 1
        try:
            await self.toolset.__aexit__(exc_type, exc, traceback)
        finally:
            await self.aclose()

    # -- making a run -----------------------------------------------------------------------

    def new_run(
        self, messages: list[Message], deps: Any = None, run_id: str | None = None
    ) -> AgentRun[OutputT]:
        """A run of this agent on `messages` (the whole transcript it starts from)."""
        setup = self._setup
        if setup is None:
            # The limiter is made in a run: it belongs to the event loop's library.
            setup = self._setup = Setup(
                settings=self.settings,
                toolset=self.toolset,
                runtime=self.runtime,
                model=self._model,
                name=self.name,
                prices=self.prices,
                clock=self.clock,
                limiter=anyio.CapacityLimiter(self.settings.max_concurrency),
                fingerprint=partial(fingerprint, self),
                dialect=self._dialect,
                fields=self._fields,
                request=partial(step_request, self._template),
                telemetry=self.telemetry,
            )
        hooks = self._guardrails.run_hooks(self.hooks)
        run: AgentRun[OutputT] = AgentRun(setup, messages, hooks, self._output, deps, run_id)
        run.trail = new_trail(self, self._reachable) if self.handoffs else None
        return run

    def start(
        self,
        prompt: str | Sequence[Message],
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        deps: Any = None,
        run_id: str | None = None,
    ) -> AgentRun[OutputT]:
        """A new run from `prompt` after `history` (or the messages of `transcript`, which
        the run then fills in place)."""
        if transcript is not None and history:
            raise UserError("pass the earlier conversation as history or as transcript, not both")
        messages = transcript if transcript is not None else []
        history = list(history) or list(messages)
        del messages[:]
        instructions = self.instructions
        if self._output:
            instructions = self._output.instructions(instructions)
        if instructions and not (history and history[0].role == "system"):
            messages.append(Message.system(instructions))
        messages.extend(history)
        if isinstance(prompt, str):
            messages.append(Message.user(prompt))
        else:
            messages.extend(prompt)
        return self.new_run(messages, deps, run_id)

    async def _begin(
        self,
        prompt: Prompt,
        history: Sequence[Message],
        transcript: list[Message] | None,
        session: Session | None,
        deps: Any,
    ) -> AgentRun[OutputT]:
        if self.toolset.running and not self._entered:
            # Sources started by another run would be stopped by whichever run ends last, in
            # a task that did not start them.
            raise UserError(
                "concurrent runs of an agent with tool sources (MCP servers) need the agent "
                "entered first: `async with agent:`"
            )
        if session is None:
            if prompt is None:
                raise UserError("prompt: required for a run without a session")
            return self.start(prompt, history, transcript, deps)
        if history:
            raise UserError("a run with a session takes its history from the session")
        if transcript is not None:
            del transcript[:]
        return await open_run(self, session, prompt, transcript, deps)
