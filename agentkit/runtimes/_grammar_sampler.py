"""Grammar-constrained sampling that checks the grammar on one token, not the vocabulary.

llama-cpp-python puts the grammar into the sampler chain, so every token runs the whole
vocabulary (49,152 entries for SmolLM2) through the grammar before choosing. Here the chain
without the grammar chooses first; only when the grammar refuses its choice does the whole
vocabulary go through the grammar, and the chain choose again from what is left (llama.cpp's
own `common_sampler` works the same way). For greedy decoding the result is the same token.
Greedy, a refused choice is followed by the next highest logits, one token each, before the
whole vocabulary: the first the grammar allows is the masked argmax.
For sampling it is the same distribution: a token the grammar allows is drawn with its
unconstrained probability plus the refused mass times its share among the allowed ones, which
is its probability under the masked distribution.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama import Llama

__all__ = ["grammar_first_refusal"]

_RUNNERS_UP = 32
"""Greedy: how many of the next highest logits are tried one by one after a refused choice."""

_TOKEN = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
assert _TOKEN.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


class _Sampler:
    """Stands in for llama-cpp-python's `LlamaSampler` inside `Llama.generate`."""

    def __init__(self, llama: Llama, chain: Any, grammar: str, options: dict[str, Any]) -> None:
        self.chain = chain
        # Greedy with no penalty: the chain's choice is the first highest logit.
        self.argmax = options.get("temp", 0.8) == 0.0 and (
            options.get("repeat_penalty", 1.0),
            options.get("frequency_penalty", 0.0),
            options.get("presence_penalty", 0.0),
        ) == (1.0, 0.0, 0.0)
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self.grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self.grammar:
            raise ValueError(f"llama.cpp refused the grammar:\n{grammar}")
        self.n_vocab = llama.n_vocab()
        self.ids = np.arange(self.n_vocab, dtype=np.intc)
        self.data = np.empty(self.n_vocab, dtype=_TOKEN)
        self.one = (llama_cpp.llama_token_data * 1)()

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
        if grammar:
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self.chain.sampler, ctypes.byref(array))
        return int(data["id"][array.selected])

    def _allowed(self, token: int) -> bool:
        one = self.one
        one[0].id = token  # type: ignore[assignment]  # ctypes converts the int
        one[0].logit, one[0].p = 0.0, 0.0
        array = llama_cpp.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        return bool(one[0].logit != -math.inf)

    def _runner_up(self, logits: np.ndarray[Any, Any]) -> int | None:
        """Greedy: the highest-logit token the grammar allows among the next highest, if any
        (ties go to the lower id, as with argmax)."""
        top = np.sort(np.argpartition(logits, -_RUNNERS_UP)[-_RUNNERS_UP:])
        for token in top[np.argsort(-logits[top], kind="stable")][1:]:
            if self._allowed(int(token)):
                return int(token)
        return None

    def sample(self, ctx: Any, idx: int = -1) -> int:
        pointer = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        token = self._choose(logits, grammar=False)
        if not self._allowed(token):
            runner_up = self._runner_up(logits) if self.argmax else None
            token = runner_up if runner_up is not None else self._choose(logits, grammar=True)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain.sampler, token)
        return token

    def close(self) -> None:
        if self.grammar:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None


def grammar_first_refusal(llama: Llama, grammar: str) -> Callable[[], None]:
    """Make `llama.generate` (called next, without `grammar=`) hold its tokens to `grammar`
    this way; returns the function that undoes it, to call once the generation is over."""
    made: list[_Sampler] = []
    original = llama._init_sampler

    def init(**options: Any) -> _Sampler:
        sampler = _Sampler(llama, original(**{**options, "grammar": None}), grammar, options)
        made.append(sampler)
        return sampler

    llama._init_sampler = init  # type: ignore[method-assign,assignment]

    def undo() -> None:
        del llama._init_sampler
        for sampler in made:
            sampler.close()

    return undo
