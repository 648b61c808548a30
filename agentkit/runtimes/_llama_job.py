"""One request to the local model: its plan, and its generation as the batching engine drives it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentkit.chat_formats import ChatFormat
from agentkit.chat_formats import answer as answers
from agentkit.chat_formats.engine import EngineGrammar
from agentkit.errors import FieldError, RequestValidationError
from agentkit.model_api import FunctionDefinition, StreamChunk, Usage
from agentkit.runtimes._closing import EngineGaveUp, NoRoom
from agentkit.runtimes._llama_decode import Output, Text
from agentkit.runtimes._sampling import Sampling, TokenSampler

__all__ = ["LlamaJob", "Plan"]

log = logging.getLogger("agentkit.runtimes")


@dataclass
class Plan:
    """What one request asks of the model, worked out before any token is generated."""

    prompt: str
    field: str
    """The request field the prompt came from: `prompt` or `messages`."""
    sampling: Sampling
    max_tokens: int
    lora: str | None
    stops: tuple[str, ...] = ()
    grammar: EngineGrammar | None = None
    """Holds from the first token (`required`, one named tool, or an answer)."""
    lazy_grammar: EngineGrammar | None = None
    """Holds from the moment the output contains `trigger` (`auto`)."""
    trigger: str | None = None
    chat_format: ChatFormat | None = None
    """Parses tool calls out of the output; None when no tools were offered."""
    answer: bool = False
    """`grammar` holds an answer object (`response_format`): its text is streamed as it grows."""
    hold: str | None = None
    """With `answer` and tools offered: text is held back while it may still be a call."""
    tools: Sequence[FunctionDefinition] = ()


class LlamaJob:
    """A generation: the engine hands it tokens, it writes text and chunks.

    `emit` receives each chunk, then an exception if the generation failed, then None;
    `deliver` hands over what was emitted (the engine calls it once a step).
    """

    def __init__(
        self,
        plan: Plan,
        *,
        model: object,
        n_ctx: int,
        tokenize: Callable[[str], list[int]],
        detokenize: Callable[[int], bytes],
        emit: Callable[[StreamChunk | BaseException | None], None],
        deliver: Callable[[], None],
        engine_tokenizer: Any = None,
        fast_forward: bool = True,
    ) -> None:
        self.plan = plan
        self.prompt = plan.prompt
        self.lora = plan.lora
        self.cancelled = threading.Event()
        self.model, self.n_ctx = model, n_ctx
        self.tokenize, self.detokenize, self.emit = tokenize, detokenize, emit
        self.deliver = deliver
        self.engine_tokenizer = engine_tokenizer
        """llguidance's tokenizer of the model, for an `EngineGrammar`."""
        self.fast_forward = fast_forward
        """Append the tokens an `EngineGrammar` forces without sampling them."""
        self.out = Output()
        self.grammar: EngineGrammar | None = plan.grammar
        self.text = plan.prompt
        self.tokens: list[int] = []
        self.prompt_tokens = self.cached = self.budget = 0
        self.last_sampler: TokenSampler | None = None

    def begin(self, tokens: list[int], cached: int) -> TokenSampler:
        plan = self.plan
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
        self.tokens = tokens
        self.prompt_tokens, self.cached = len(tokens), cached
        self.budget = min(plan.max_tokens, self.n_ctx - len(tokens))
        watch = () if self.grammar else tuple(t for t in (plan.trigger,) if t)
        self.part = self._part(watch, stream=self.grammar is None or plan.answer, hold=plan.hold)
        return self.sampler()

    def _part(self, watch: tuple[str, ...], *, stream: bool, hold: str | None = None) -> Text:
        return Text(
            self.out,
            self.detokenize,
            stops=self.plan.stops,
            watch=watch,
            budget=self.budget,
            emit=self.emit,
            stream=stream,
            hold=hold,
        )

    def sampler(self) -> TokenSampler:
        sampler = TokenSampler(
            self.model,
            self.plan.sampling,
            self.grammar,
            tokenizer=self.engine_tokenizer,
            fast_forward=self.fast_forward,
        )
        written = self.out.completion_tokens
        try:
            sampler.steer(self.budget - written)
        except EngineGaveUp as exc:
            sampler.close()
            where = "response_format.json_schema" if self.plan.answer else "tools"
            why = f"is more than the grammar engine holds: {exc}"
            raise RequestValidationError([FieldError(where, why)]) from None
        except NoRoom as exc:
            if written:
                pass  # a call begun mid-answer: it runs unguarded, as any generation does
            else:
                sampler.close()
                raise RequestValidationError(
                    [
                        FieldError(
                            "max_tokens",
                            f"the shortest value the grammar allows takes {exc.needed} "
                            f"tokens, more than the {exc.left} this request may generate",
                        )
                    ]
                ) from None
        self.last_sampler = sampler
        return sampler

    def take(self, token: int, forced: bool = False) -> list[int] | bool:
        if not self.part.take(token, forced):
            return False
        found, out = self.part.found, self.out
        if found is None or self.plan.lazy_grammar is None:
            return True
        # The model began a call: take back the trigger and write the call under the grammar.
        prose = out.text[:found]
        out.text = prose
        self.text += prose
        self.tokens = self.tokens + self.tokenize(prose)
        if out.completion_tokens >= self.budget:
            return True
        self.grammar = self.plan.lazy_grammar
        self.part = self._part((), stream=False)
        return self.tokens

    def end_of_turn(self) -> None:
        self.part.end_of_turn()

    def finish(self) -> tuple[str, list[int]]:
        plan, out = self.plan, self.out
        written = out.text[out.emitted :]
        # Under an answer grammar the text is the answer object unless the model began a call.
        calls_written = plan.chat_format is not None and (
            not plan.answer or answers.is_call(plan.chat_format, written, plan.tools)
        )
        if self.grammar is not None and calls_written and plan.chat_format is not None:
            answer, out.calls = plan.chat_format.parse(written)
            if out.calls:
                out.text = out.text[: out.emitted] + answer
                out.finish_reason = "tool_calls"
        truncated = self.last_sampler is not None and self.last_sampler.steered
        if truncated and not out.calls:
            out.finish_reason = "length"  # ended early for the budget, complete all the same
        rest = out.text[out.emitted :]
        if rest:
            self.emit(StreamChunk(response=rest))
        if out.calls:
            self.emit(StreamChunk(tool_calls=out.calls))
        usage = Usage.of(self.prompt_tokens, out.completion_tokens, self.cached)
        if out.fast_forwarded:
            # The share of the answer the grammar wrote; the numbers ride on the record too.
            log.debug(
                "local generation: %d of %d completion tokens fast-forwarded",
                out.fast_forwarded,
                out.completion_tokens,
                extra={
                    "fast_forwarded_tokens": out.fast_forwarded,
                    "completion_tokens": out.completion_tokens,
                },
            )
        self.emit(StreamChunk(usage=usage, finish_reason=out.finish_reason, truncated=truncated))
        self.emit(None)
        return self.text + out.decoded, self.tokens + out.sampled

    def fail(self, error: BaseException) -> None:
        self.emit(error)
        self.emit(None)
