"""llguidance on llama.cpp's vocabulary: the tokenizer it needs, and one sequence's matcher.

The tokenizer is the model's own vocabulary, read from the GGUF file by llama.cpp: each token's
bytes as llama.cpp writes them (byte-level pieces decoded, `<0x..>` byte tokens as their byte),
control tokens (`<|im_end|>`, ...) marked special so that no text can match them, and every
end-of-generation token an end of the grammar. Building it reads the whole vocabulary (a
fraction of a second for SmolLM2's 49,152 tokens): once per model.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp
import llguidance
import numpy as np

from agentkit.chat_formats.engine import EngineGrammar

__all__ = ["GuidanceMatcher", "engine_error", "engine_tokenizer"]

_SPECIAL = b"\xff"
"""llguidance's mark of a special token's bytes (never in UTF-8 text, so no text matches it)."""


class _Vocabulary:
    """A llama.cpp vocabulary as `llguidance.TokenizerWrapper` reads a tokenizer: the bytes of
    every token, the special ones, the end token, and tokenizing (which the engine asks for only
    when it turns text into tokens, never to mask or check one)."""

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.ends = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        self.eos_token_id = self.ends[0] if self.ends else llama_cpp.llama_vocab_eos(vocab)
        bos = llama_cpp.llama_vocab_bos(vocab)
        self.bos_token_id = bos if bos >= 0 else None
        self.tokens: list[bytes] = []
        self.special_token_ids: list[int] = []
        buffer = ctypes.create_string_buffer(4096)
        for token in range(n_vocab):
            size = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, True)
            if size < 0:
                raise ValueError(f"token {token} of the vocabulary is longer than {len(buffer)}")
            piece = buffer.raw[:size]
            attr = llama_cpp.llama_vocab_get_attr(vocab, token)
            # A control token, or one added by hand that looks like one (`<tool_call>` in some
            # models): no text may produce it.
            looks_special = attr & llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED and (
                piece.startswith(b"<") and piece.endswith(b">")
            )
            if attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL or looks_special:
                piece = _SPECIAL + piece
                self.special_token_ids.append(token)
            self.tokens.append(piece)

    def __call__(self, text: bytes) -> list[int]:
        room = len(text) + 8
        while True:
            out = (llama_cpp.llama_token * room)()
            n = llama_cpp.llama_tokenize(self.vocab, text, len(text), out, room, False, False)
            if n >= 0:
                return list(out[:n])
            room = -n


def engine_error(matcher: llguidance.LLMatcher) -> str:
    """The first line of a matcher's error, shortened (the rest dumps its state and grammar)."""
    lines = str(matcher.get_error() or "stopped").strip().splitlines()
    return (lines[0] if lines else "stopped")[:200]


def engine_tokenizer(vocab: Any) -> llguidance.LLTokenizer:
    """llguidance's tokenizer for a llama.cpp vocabulary (`llama_model_get_vocab`); every
    end-of-generation token ends the grammar."""
    vocabulary = _Vocabulary(vocab)
    wrapper = llguidance.TokenizerWrapper(vocabulary)
    return llguidance.LLTokenizer(wrapper, eos_token=vocabulary.ends or None)


class GuidanceMatcher:
    """One sequence's grammar: asked about one token (cheap: microseconds), or for the whole
    vocabulary's mask (tens of microseconds) when the token it was asked about is refused."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: EngineGrammar) -> None:
        self.tokenizer = tokenizer
        self.matcher = llguidance.LLMatcher(tokenizer, grammar.text, log_level=0)
        if self.matcher.is_error():
            raise ValueError(f"llguidance refused the grammar: {engine_error(self.matcher)}")
        self.tokenizer = tokenizer
        self.ends = frozenset(tokenizer.eos_tokens)
        self.end = min(self.ends) if self.ends else None
        self.words = np.zeros((tokenizer.vocab_size + 31) // 32, dtype=np.int32)

    def allowed(self, token: int) -> bool:
        """Whether the grammar allows `token` next (its state unchanged)."""
        if token in self.ends:
            # An end of generation is not text the matcher validates: the grammar ends here.
            return bool(self.matcher.is_accepting())
        return bool(self.matcher.validate_tokens([token]) == 1)

    def mask(self, n_vocab: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Which of the first `n_vocab` tokens the grammar allows next."""
        words = self.words
        self.matcher.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:n_vocab]
        return bits.astype(bool)

    def accept(self, token: int) -> None:
        """Move past `token` (one the grammar allows)."""
        if not self.matcher.consume_token(token):
            raise ValueError(f"llguidance refused token {token}: {engine_error(self.matcher)}")

    def fast_forward(self, last: int | None = None) -> list[int]:
        """The tokens to append now that the grammar allows only one way on, all taken in.

        `last` is the token just chosen (already taken in) and not yet evaluated by the model,
        or None at the start of the grammar. The forced text is llguidance's: its tokens are
        the usual (canonical) tokenization of the text, without the last tokens that could
        still merge with what follows (that text is left for the model to write, so that no
        token is split where the model would not split it). Where `last` and the forced text
        read together tokenize otherwise than `last` then the forced tokens (`as` + `s`,
        `istant` where `ass`, `istant` is usual), `last` is taken back and the whole is
        written the usual way: the model never evaluated `last`, so nothing is undone but the
        grammar's last step. The list starts with `last` or what replaced it; it ends with an
        end-of-generation token when the grammar is complete and allows nothing else.
        """
        matcher = self.matcher
        forced = matcher.compute_ff_tokens()
        tokens = [] if last is None else [last]
        if forced and last is not None and last not in self.ends:
            usual = self._usual(last, forced)
            if usual is not None:
                tokens, forced = [], usual
                matcher.rollback(1)
        if forced and not matcher.consume_tokens(forced):
            raise ValueError(f"llguidance refused its own forced tokens: {engine_error(matcher)}")
        tokens += forced
        if tokens and matcher.is_stopped() and self.end is not None:
            tokens.append(self.end)
        return tokens

    def _usual(self, last: int, forced: list[int]) -> list[int] | None:
        """`last` and the forced tokens tokenized as one text, if that moves the boundary."""
        tokenizer = self.tokenizer
        text = tokenizer.decode_bytes([last, *forced])
        usual: list[int] = tokenizer.tokenize_bytes(text)
        # The end must stay where llguidance left it (its tokens cannot merge with what
        # comes next), and the whole must be shorter, or nothing was gained.
        if usual[0] == last or usual[-1] != forced[-1] or len(usual) > len(forced):
            return None
        return usual

    def close(self) -> None:
        """Nothing to free by hand: the matcher goes with its last reference."""
