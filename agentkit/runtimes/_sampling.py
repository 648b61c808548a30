"""One sequence's sampler: its own chain (penalties, top-k, top-p, temperature, seed) and, when
asked, its own grammar, checked on the chosen token rather than on the vocabulary.

A grammar is either GBNF text, held by llama.cpp's grammar sampler (tool calls), or an
`EngineGrammar`, held by an llguidance matcher (answers): both are asked the same two questions,
whether one token is allowed, and which tokens of the vocabulary are.

The chain is llama-cpp-python's, in its order, so a seed gives what it gave before batching.
With a grammar, the chain without it chooses first; only when the grammar refuses that choice
does the whole vocabulary (49,152 entries for SmolLM2) go through the grammar, and the chain
choose again from what is left (llama.cpp's own `common_sampler` works the same way). Greedy,
a refused choice is followed by the next highest logits, one token each, before the whole
vocabulary: the first the grammar allows is the masked argmax. Sampled, the result has the
masked distribution: a token the grammar allows is drawn with its unconstrained probability
plus the refused mass times its share among the allowed ones.

Fast-forwarding (an `EngineGrammar`, when asked): where the grammar allows one way on only (a
key, punctuation, the rest of an enum value), its tokens follow the chosen one without being
sampled, and the model evaluates them together in the next step (`TokenSampler.step`).
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any, Protocol

import llama_cpp
import numpy as np

from agentkit.chat_formats.engine import EngineGrammar
from agentkit.runtimes._closing import Steering, closer_for
from agentkit.runtimes._guidance import GuidanceMatcher

__all__ = ["Sampling", "TokenSampler"]

_RUNNERS_UP = 32
"""Greedy: how many of the next highest logits are tried one by one after a refused choice."""

_PENALTY_WINDOW = 64
"""Penalties look at this many of the latest tokens (llama-cpp-python's `last_n_tokens_size`)."""

_TOKEN = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
assert _TOKEN.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


@dataclass(frozen=True)
class Sampling:
    """How one request samples its tokens."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    """None draws a fresh seed."""

    @property
    def greedy(self) -> bool:
        """The choice is the highest logit: greedy and no penalty moves a logit."""
        return self.temperature == 0.0 and (
            self.repetition_penalty,
            self.frequency_penalty,
            self.presence_penalty,
        ) == (1.0, 0.0, 0.0)


class _Grammar(Protocol):
    def allowed(self, token: int) -> bool: ...

    def restrict(self, data: np.ndarray[Any, Any], array: Any) -> None:
        """Set the logit of every token the grammar refuses next to -inf."""

    def accept(self, token: int) -> None: ...

    def close(self) -> None: ...


class _LlamaGrammar:
    """GBNF on llama.cpp's grammar sampler."""

    def __init__(self, model: Any, grammar: str) -> None:
        vocab = llama_cpp.llama_model_get_vocab(model)
        self.sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self.sampler:
            raise ValueError(f"llama.cpp refused the grammar:\n{grammar}")
        self.one = (llama_cpp.llama_token_data * 1)()

    def allowed(self, token: int) -> bool:
        one = self.one
        one[0].id = token  # type: ignore[assignment]  # ctypes converts the int
        one[0].logit, one[0].p = 0.0, 0.0
        array = llama_cpp.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))
        return bool(one[0].logit != -math.inf)

    def restrict(self, data: np.ndarray[Any, Any], array: Any) -> None:
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self.sampler, token)

    def close(self) -> None:
        if self.sampler:
            llama_cpp.llama_sampler_free(self.sampler)
        self.sampler = None


class _EngineGrammar:
    """An `EngineGrammar` on an llguidance matcher."""

    def __init__(self, tokenizer: Any, grammar: EngineGrammar) -> None:
        if tokenizer is None:
            raise ValueError("an engine grammar needs the engine's tokenizer of the model")
        self.grammar = grammar
        self.matcher = GuidanceMatcher(tokenizer, grammar)
        self.allowed = self.matcher.allowed
        self.accept = self.matcher.accept
        self.close = self.matcher.close

    def restrict(self, data: np.ndarray[Any, Any], array: Any) -> None:
        data["logit"][~self.matcher.mask(len(data))] = -np.inf


class TokenSampler:
    """Chooses one sequence's tokens from the logits llama.cpp computed for it.

    Args:
        model: the llama.cpp model (its vocabulary).
        sampling: how to choose.
        grammar: GBNF text, an `EngineGrammar`, or None (free).
        tokenizer: llguidance's tokenizer of the model (`_guidance.engine_tokenizer`), for an
            `EngineGrammar`.
        fast_forward: under an `EngineGrammar`, append the tokens it forces without sampling
            them (`step`, `forced`).
    """

    def __init__(
        self,
        model: Any,
        sampling: Sampling,
        grammar: str | EngineGrammar | None = None,
        *,
        tokenizer: Any = None,
        fast_forward: bool = False,
    ) -> None:
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        self.argmax = sampling.greedy
        self.chain = self._chain(sampling)
        self.grammar: _Grammar | None = None
        self.forward: GuidanceMatcher | None = None
        """The matcher whose forced tokens are appended, when fast-forwarding."""
        self.steering: Steering | None = None
        """Keeps room to end the value an engine grammar holds (`steer`)."""
        if grammar is not None:
            try:
                if isinstance(grammar, str):
                    self.grammar = _LlamaGrammar(model, grammar)
                else:
                    self.grammar = engine = _EngineGrammar(tokenizer, grammar)
                    if fast_forward:
                        self.forward = engine.matcher
            except Exception:
                self.close()
                raise
            self.ids = np.arange(self.n_vocab, dtype=np.intc)
            self.data = np.empty(self.n_vocab, dtype=_TOKEN)

    def _chain(self, s: Sampling) -> Any:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        add(
            chain,
            llama_cpp.llama_sampler_init_penalties(
                self.n_vocab,
                _PENALTY_WINDOW,
                max(s.repetition_penalty, 1e-3),
                s.frequency_penalty,
                s.presence_penalty,
            ),
        )
        if s.temperature == 0.0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
            return chain
        seed = s.seed if s.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
        add(chain, llama_cpp.llama_sampler_init_top_k(s.top_k))
        add(chain, llama_cpp.llama_sampler_init_typical(1.0, 1))
        add(chain, llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
        add(chain, llama_cpp.llama_sampler_init_min_p(0.0, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(s.temperature))
        add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def steer(self, left: int) -> None:
        """From now on, keep room in the `left` tokens the generation may still write to end
        what the engine grammar holds as a complete value (`agentkit.runtimes._closing`).

        Raises:
            NoRoom: the shortest value does not fit in `left`.
        """
        grammar = self.grammar
        if isinstance(grammar, _EngineGrammar):
            matcher = grammar.matcher
            closer = closer_for(matcher.tokenizer)
            held = grammar.grammar
            self.steering = Steering(closer, held.text, matcher.matcher, held.hints, left)

    @property
    def steered(self) -> bool:
        """The value was ended early to fit the budget (complete, and shorter than the model's
        own would have been)."""
        return self.steering is not None and self.steering.steered

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits of batch entry `index`; the chain and the grammar
        take it in."""
        steering = self.steering
        if steering is not None and steering.queue:
            token = steering.queue.pop(0)
        elif self.grammar is None and not self.argmax:
            # llama.cpp applies the chain and takes the token in.
            return int(llama_cpp.llama_sampler_sample(self.chain, ctx, index))
        else:
            token = self._constrained(ctx, index)
            if steering is not None:
                # Ending early: the first of the ending now, the rest at the next steps.
                token, *steering.queue = steering.took([token])
        llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def step(self, ctx: Any, index: int) -> list[int]:
        """The tokens to append after the logits of batch entry `index`: the one chosen from
        them and, fast-forwarding, those the grammar forces after it (the chosen one may be
        written together with them the usual way: see `GuidanceMatcher.fast_forward`); the
        last may be an end of generation. The chain and the grammar take them all in. Ending
        early to fit the budget, the ending is appended whole."""
        if self.forward is None:
            return [self.sample(ctx, index)]
        tokens = self.forward.fast_forward(self._constrained(ctx, index))
        if self.steering is not None:
            tokens = self.steering.took(tokens)
        self._accept(tokens)
        return tokens

    def forced(self) -> list[int]:
        """Fast-forwarding: the tokens the grammar forces before any is sampled (its opening,
        `{"` of an object), taken in; none otherwise."""
        if self.forward is None:
            return []
        tokens = self.forward.fast_forward()
        if self.steering is not None and tokens:
            tokens = self.steering.took(tokens)
        self._accept(tokens)
        return tokens

    def _accept(self, tokens: list[int]) -> None:
        # The penalties count forced tokens as they count sampled ones.
        for token in tokens:
            llama_cpp.llama_sampler_accept(self.chain, token)

    def _constrained(self, ctx: Any, index: int) -> int:
        """The chosen token, taken in by the grammar (not yet by the chain)."""
        pointer = llama_cpp.llama_get_logits_ith(ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        token = self._choose(logits, grammar=False)
        if self.grammar is not None:
            if not self.grammar.allowed(token):
                runner_up = self._runner_up(logits) if self.argmax else None
                token = runner_up if runner_up is not None else self._choose(logits, grammar=True)
            self.grammar.accept(token)
        return token

    def _choose(self, logits: np.ndarray[Any, Any], grammar: bool) -> int:
        if self.argmax and not grammar:
            return int(np.argmax(logits))
        data = self.data
        data["id"], data["logit"], data["p"] = self.ids, logits, 0.0
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=self.n_vocab,
            selected=-1,
            sorted=False,
        )
        if grammar and self.grammar is not None:
            self.grammar.restrict(data, array)
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(array))
        return int(data["id"][array.selected])

    def _runner_up(self, logits: np.ndarray[Any, Any]) -> int | None:
        """Greedy: the highest-logit token the grammar allows among the next highest, if any
        (ties go to the lower id, as with argmax)."""
        top = np.sort(np.argpartition(logits, -_RUNNERS_UP)[-_RUNNERS_UP:])
        assert self.grammar is not None
        for token in top[np.argsort(-logits[top], kind="stable")][1:]:
            if self.grammar.allowed(int(token)):
                return int(token)
        return None

    def close(self) -> None:
        if self.grammar is not None:
            self.grammar.close()
        if self.chain:
            llama_cpp.llama_sampler_free(self.chain)
        self.grammar = self.chain = self.forward = None
