"""The engines `benchmarks.grammar_engines` compares, on SmolLM2's vocabulary: llguidance
(as it comes, lenient, and as agentkit compiles answers), XGrammar, and agentkit's GBNF builder
on llama.cpp's grammar sampler."""

from __future__ import annotations

import json
import sys
import types
from typing import Any

STYLES = {"ours": (", ", ": "), "compact": (",", ":")}
"""agentkit's JSON style (`json.dumps`'s) and the compact one."""
MASK_TOKENS = 64
"""Full masks timed per schema (the first valid instance's first tokens)."""
GBNF_MASK_TOKENS = 8
GBNF_MASK_SCHEMAS = 8
"""The GBNF sampler's full mask takes milliseconds: fewer tokens, fewer schemas per subset."""


# -- the vocabulary -------------------------------------------------------------------------


class Vocabulary:
    """SmolLM2's tokenizer and its tokens' bytes, read from the GGUF file by llama.cpp."""

    def __init__(self) -> None:
        import ctypes

        import llama_cpp

        from agentkit.runtimes.llama_cpp import embedded_model_path

        self.llama = llama_cpp.Llama(
            model_path=str(embedded_model_path()), vocab_only=True, verbose=False
        )
        self.model = self.llama.model
        vocab = self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.eog = [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        buffer = ctypes.create_string_buffer(1024)
        self.pieces: list[bytes] = []
        self.special: set[int] = set()
        for token in range(self.n_vocab):
            n = llama_cpp.llama_token_to_piece(vocab, token, buffer, 1024, 0, True)
            self.pieces.append(buffer.raw[:n])
            if llama_cpp.llama_token_get_attr(vocab, token) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
                self.special.add(token)

    def tokenize(self, text: str) -> list[int]:
        tokens: list[int] = self.llama.tokenize(text.encode(), add_bos=False, special=False)
        return tokens


# -- the engines ----------------------------------------------------------------------------


class Engine:
    """One grammar engine: compile a schema in a style, then feed tokens to a fresh matcher."""

    name = ""
    styles: tuple[str, ...] = ("ours", "compact")
    mask_tokens = MASK_TOKENS
    mask_schemas: int | None = None
    """Schemas per subset whose masks are timed (None: all)."""

    def compile(self, schema: Any, style: str) -> Any:
        """The compiled grammar; raises with the engine's reason when it refuses the schema."""
        raise NotImplementedError

    def matcher(self, compiled: Any) -> Any:
        raise NotImplementedError

    def check(self, matcher: Any, token: int) -> bool:
        """Whether the matcher allows `token` next (its state unchanged)."""
        raise NotImplementedError

    def consume(self, matcher: Any, token: int) -> bool:
        raise NotImplementedError

    def can_end(self, matcher: Any) -> bool:
        raise NotImplementedError

    def mask(self, matcher: Any) -> None:
        """Compute the whole vocabulary's mask for the next token."""
        raise NotImplementedError

    def close(self, matcher: Any) -> None:
        pass

    def accepts(self, compiled: Any, tokens: list[int]) -> bool:
        matcher = self.matcher(compiled)
        try:
            return all(self.consume(matcher, t) for t in tokens) and self.can_end(matcher)
        finally:
            self.close(matcher)


class LLGuidance(Engine):
    name = "llguidance"
    lenient = False
    """Leave keywords it does not implement (`not`, `if`, ...) unchecked rather than refuse."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        import llguidance
        import llguidance.llamacpp
        import numpy as np

        self.llg = llguidance
        self.version = llguidance.__version__ if hasattr(llguidance, "__version__") else "?"
        self.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(
            vocabulary.vocab, eos_token=vocabulary.eog
        )
        self.buffer = np.zeros((vocabulary.n_vocab + 31) // 32, dtype=np.int32)

    def compile(self, schema: Any, style: str) -> Any:
        item, key = STYLES[style]
        options = {
            "item_separator": item,
            "key_separator": key,
            "whitespace_flexible": False,
            "lenient": self.lenient,
        }
        grammar = self.llg.LLMatcher.grammar_from_json_schema(schema, overrides=options)
        matcher = self.llg.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher

    def matcher(self, compiled: Any) -> Any:
        return compiled.deep_copy()

    def check(self, matcher: Any, token: int) -> bool:
        return bool(matcher.validate_tokens([token]) == 1)

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.try_consume_tokens([token]) == 1)

    def can_end(self, matcher: Any) -> bool:
        return bool(matcher.is_accepting())

    def mask(self, matcher: Any) -> None:
        matcher.unsafe_compute_mask_ptr(self.buffer.ctypes.data, self.buffer.nbytes)


class LLGuidanceLenient(LLGuidance):
    name = "llguidance, lenient"
    lenient = True


class AgentkitEngine(LLGuidance):
    """The answer grammar as the local runtime now compiles it (`agentkit.chat_formats.engine`):
    llguidance, keywords it lacks left to the validator, undeclared properties closed."""

    name = "agentkit on llguidance"
    styles = ("ours",)

    def compile(self, schema: Any, style: str) -> Any:
        from agentkit.chat_formats.engine import engine_grammar

        grammar = engine_grammar(schema, checked_after=True)
        matcher = self.llg.LLMatcher(self.tokenizer, grammar.text, log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher


def import_xgrammar() -> Any:
    """XGrammar, with stand-ins for torch and transformers when they are not installed (its
    package imports them for tensor and Hugging Face helpers; its matcher fills NumPy arrays)."""
    try:
        import xgrammar

        return xgrammar
    except ImportError as exc:
        if exc.name not in ("torch", "transformers"):
            raise
    import tvm_ffi  # noqa: F401  # loaded first: it looks for a real torch when imported

    class _Anything:
        def __call__(self, *args: Any, **kwargs: Any) -> _Anything:
            return _Anything()

        def __getattr__(self, name: str) -> _Anything:
            return _Anything()

        def __getitem__(self, item: Any) -> _Anything:
            return _Anything()

        def __mro_entries__(self, bases: Any) -> tuple[type, ...]:
            return (object,)

    class _StandIn(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return _Anything()

    for name in ("torch", "torch.nn", "torch.nn.functional", "transformers"):
        sys.modules.setdefault(name, _StandIn(name))
    for name in [n for n in sys.modules if n.startswith("xgrammar")]:
        del sys.modules[name]
    import xgrammar

    return xgrammar


class XGrammar(Engine):
    name = "xgrammar"

    def __init__(self, vocabulary: Vocabulary) -> None:
        import numpy as np

        xgr = self.xgr = import_xgrammar()
        # Control tokens as empty strings: XGrammar then treats them as special, never text.
        encoded = [b"" if t in vocabulary.special else p for t, p in enumerate(vocabulary.pieces)]
        info = xgr.TokenizerInfo(encoded, xgr.VocabType.RAW, stop_token_ids=vocabulary.eog)
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.stop = vocabulary.eog[0]
        self.buffer = np.zeros((1, (vocabulary.n_vocab + 31) // 32), dtype=np.int32)

    def compile(self, schema: Any, style: str) -> Any:
        return self.compiler.compile_json_schema(
            json.dumps(schema), any_whitespace=False, separators=STYLES[style]
        )

    def matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def check(self, matcher: Any, token: int) -> bool:
        if not matcher.accept_token(token):
            return False
        matcher.rollback(1)
        return True

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))

    def can_end(self, matcher: Any) -> bool:
        return bool(matcher.accept_token(self.stop))

    def mask(self, matcher: Any) -> None:
        matcher.fill_next_token_bitmask(self.buffer)


class AgentkitGBNF(Engine):
    """agentkit's builder (the answer grammar, nothing left to a validator) on llama.cpp."""

    name = "agentkit GBNF"
    checked_after = False
    """Leave the keywords it cannot hold to a validator rather than refuse (the runtime's
    default: an Agent validates every answer)."""
    styles = ("ours",)
    mask_tokens = GBNF_MASK_TOKENS
    mask_schemas = GBNF_MASK_SCHEMAS

    def __init__(self, vocabulary: Vocabulary) -> None:
        import ctypes

        import llama_cpp
        import numpy as np

        from agentkit.chat_formats import answer, get_format, schema_to_gbnf
        from agentkit.runtimes._sampling import Sampling, TokenSampler

        self.answer, self.chatml = answer, get_format("chatml")
        self.schema_to_gbnf = schema_to_gbnf
        self.llama_cpp, self.ctypes, self.np = llama_cpp, ctypes, np
        self.sampler = lambda gbnf: TokenSampler(vocabulary.model, Sampling(), gbnf)
        self.stop = vocabulary.eog[-1]
        self.logits = np.zeros(vocabulary.n_vocab, dtype=np.float32)

    def compile(self, schema: Any, style: str) -> Any:
        response_format = {"type": "json_schema", "json_schema": schema}
        grammar = self.schema_to_gbnf(
            self.answer.answer_schema(response_format),
            checked_after=self.checked_after,
            max_ref_depth=self.answer.MAX_REF_DEPTH,
        )
        self.close(self.sampler(grammar))  # llama.cpp parses it
        return grammar

    def matcher(self, compiled: Any) -> Any:
        return self.sampler(compiled)

    def check(self, matcher: Any, token: int) -> bool:
        return bool(matcher.grammar.allowed(token))

    def consume(self, matcher: Any, token: int) -> bool:
        if not matcher.grammar.allowed(token):
            return False
        matcher.grammar.accept(token)
        return True

    def can_end(self, matcher: Any) -> bool:
        return bool(matcher.grammar.allowed(self.stop))

    def mask(self, matcher: Any) -> None:
        data = matcher.data
        data["id"], data["logit"], data["p"] = matcher.ids, self.logits, 0.0
        llama_cpp = self.llama_cpp
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=matcher.n_vocab,
            selected=-1,
            sorted=False,
        )
        matcher.grammar.restrict(data, array)

    def close(self, matcher: Any) -> None:
        matcher.close()


class AgentkitGBNFCheckedAfter(AgentkitGBNF):
    name = "agentkit GBNF, checked after"
    checked_after = True
