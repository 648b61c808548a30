"""The grammar engine without the model: whether a grammar lets the model write a text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp

from agentkit.chat_formats.engine import EngineGrammar
from agentkit.runtimes._guidance import GuidanceMatcher, engine_tokenizer

from support.helpers import raw_llama

Vocabulary = tuple[Any, Any]
"""The model's tokenizer (llama.cpp) and the engine's tokenizer made from its vocabulary."""


def open_vocabulary(model_path: Path) -> Iterator[Vocabulary]:
    """For a fixture: the vocabulary of the model at `model_path`, closed after."""
    llama = raw_llama(model_path, vocab_only=True)
    yield llama, engine_tokenizer(llama_cpp.llama_model_get_vocab(llama.model))
    llama.close()


def grammar_accepts(vocabulary: Vocabulary, grammar: EngineGrammar, text: str) -> bool:
    """Whether `grammar` lets the model write `text`, token by token, and then end its turn."""
    llama, tokenizer = vocabulary
    matcher = GuidanceMatcher(tokenizer, grammar)
    for token in llama.tokenize(text.encode(), add_bos=False, special=False):
        if not matcher.allowed(token):
            return False
        matcher.accept(token)
    return matcher.allowed(llama.token_eos())
