"""Continuous batching: many generations share one llama.cpp context, one decode step at a time.

One thread owns the context. Each generation gets a slot: a sequence id of its own in the KV
cache. Every step puts the next token of each generating sequence, and as much of the prompts
being read as fits, into one batch; one `llama_decode` computes them all; each sequence then
samples its token from its own logits with its own sampler. Generations that arrive join at the
next step, and those that end (or whose client left) free their slot at once.

A slot keeps its tokens in the cache after its generation ends, so a conversation's next step,
sent to the slot that holds its beginning, evaluates only what is new. With a unified cache, a
prefix another slot holds (a shared system prompt, the tool definitions) is copied rather than
evaluated again.

LoRA adapters apply to the whole context, so one step serves the sequences of one adapter (or
none); groups take turns, `LORA_TURN` steps at a time while another group waits.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import llama_cpp
from llama_cpp.llama import Llama

from agentkit.errors import ConfigurationError, TransportError
from agentkit.runtimes._llama_load import llama_silent, load_weights
from agentkit.runtimes._sampling import TokenSampler

__all__ = ["LORA_TURN", "Engine", "Job", "Slot"]

LORA_TURN = 16
"""Decode steps one adapter's sequences get while another adapter's wait."""

PIECE = 63
"""The most prompt tokens of one sequence a step evaluates. llama.cpp's CPU flash attention
computes a sequence's queries one by one below 64 of them and in tiles from 64 on, and the two
round differently: in pieces under 64, a token's numbers are the same however its prompt was
split, whatever else the batch holds, and whatever the slot had cached."""

MIN_SHARED = 32
"""A prefix held by another slot is copied when it is this many tokens longer than one's own;
a free slot holding a beginning this much shorter than the best one's may be chosen instead,
to keep the running sequences' ids consecutive."""


class Job(Protocol):
    """One generation, as the engine drives it (the runtime implements it)."""

    prompt: str
    lora: str | None
    cancelled: threading.Event

    def begin(self, tokens: list[int], cached: int) -> TokenSampler:
        """The prompt's tokens are known (`cached` of them already in the slot's cache): check
        them and return the sampler of the first part."""

    def take(self, token: int, forced: bool = False) -> list[int] | bool:
        """The next token (`forced` by the grammar): False to go on, True when the generation
        is over, or the tokens the sequence holds before the next part (`sampler()`'s)."""

    def sampler(self) -> TokenSampler:
        """The sampler of the part that begins now."""

    def end_of_turn(self) -> None:
        """The model ended its turn."""

    def finish(self) -> tuple[str, list[int]]:
        """The generation is over: send what is left; return the text the slot now holds and
        its tokens (for the request that continues it)."""

    def fail(self, error: BaseException) -> None:
        """The generation cannot go on."""

    def deliver(self) -> None:
        """Hand over what the step produced (called once per step, after every sequence's
        token is taken)."""


@dataclass
class Slot:
    """One sequence of the KV cache."""

    seq: int
    cache: list[int] = field(default_factory=list)
    """The tokens the cache holds for this sequence, from position 0."""
    lora: str | None = None
    """The adapter they were computed with."""
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    """The last prompt and answer, and the tokens it was read as."""
    used: float = 0.0


@dataclass
class _Running:
    job: Job
    slot: Slot
    sampler: TokenSampler
    todo: list[int]
    """Tokens to put into the cache before sampling: the prompt, then each sampled token and
    the tokens the grammar forced after it."""
    ending: bool = False
    """The generation is over, but tokens it wrote are still in `todo`: they go into the cache
    (nothing is sampled after them) before the job finishes and the slot is freed."""


class Engine:
    """The model, its context, its slots, and the thread that steps them."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int,
        parallel: int,
        n_threads: int,
        n_batch: int,
        kv_unified: bool,
        loras: Mapping[str, Path],
        options: Mapping[str, Any],
    ) -> None:
        self.parallel = parallel
        self.n_batch = max(n_batch, parallel)
        self.kv_unified = kv_unified
        self.loras = loras
        # The Llama object reads text (its vocabulary only); the weights and the context are our
        # own, loaded with the model parameters it worked out from the options. Its context of
        # a vocabulary has no trained length, which llama.cpp would warn about on stderr.
        with llama_silent():
            self.llama = Llama(
                model_path=str(model_path),
                n_ctx=64,
                n_batch=64,
                verbose=False,
                **{**options, "vocab_only": True},
            )
        self.model = load_weights(model_path, self.llama)
        params = type(self.llama.context_params).from_buffer_copy(self.llama.context_params)
        params.n_ctx = n_ctx * parallel
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = parallel
        params.kv_unified = kv_unified
        params.n_threads = params.n_threads_batch = n_threads
        if "flash_attn" not in options:
            # Flash attention computes each token's attention on its own: a sequence's numbers
            # do not depend on how its prompt was split or on what else is in the batch.
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            self.llama.close()
            raise ConfigurationError(
                f"llama.cpp could not make a context of {n_ctx} tokens x {parallel} slots"
            )
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.slots = [Slot(seq) for seq in range(parallel)]
        self.adapters: dict[str, Any] = {}
        self.active_lora: str | None = None
        self.lora_steps = 0
        self.widest = 0
        """The most sequences one step has served (reset by whoever reads it)."""
        self.waiting: deque[Job] = deque()
        self.running: list[_Running] = []
        self.condition = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="agentkit-llama", daemon=True)
        self.thread.start()

    # -- the caller's side ------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a generation; it joins the batch when a slot is free."""
        with self.condition:
            if self.stopping:
                raise ConfigurationError("the runtime is closed")
            self.waiting.append(job)
            self.condition.notify()

    def close(self) -> None:
        """Stop the thread, end the generations still running, free the model."""
        with self.condition:
            self.stopping = True
            self.condition.notify()
        self.thread.join()
        for adapter in self.adapters.values():
            llama_cpp.llama_adapter_lora_free(adapter)
        self.adapters.clear()
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)
        self.llama.close()

    # -- the engine's thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.condition:
                while not (self.stopping or self.running or self.waiting):
                    self.condition.wait()
                if self.stopping:
                    break
                self._drop_cancelled()
                admitted: list[Job] = []
                while self.waiting and len(self.running) + len(admitted) < self.parallel:
                    admitted.append(self.waiting.popleft())
                if not (self.running or admitted):
                    continue
            try:
                for job in admitted:
                    self._admit(job)
                if self.running:
                    self._step()
            except Exception as exc:  # a fault of the engine's own: end what runs, go on
                self._abandon(list(self.running), exc)
        closed = ConfigurationError("the runtime was closed")
        for running in list(self.running):
            running.job.fail(closed)
            self._release(running)
        for job in self.waiting:
            job.fail(closed)
        self.waiting.clear()

    def _drop_cancelled(self) -> None:
        self.waiting = deque(job for job in self.waiting if not job.cancelled.is_set())
        for running in [r for r in self.running if r.job.cancelled.is_set()]:
            self._release(running)

    def _abandon(self, runnings: list[_Running], error: BaseException) -> None:
        """End these generations with `error`; what their slots cached cannot be trusted."""
        for running in runnings:
            self._forget(running.slot, running.slot.lora)
            running.job.fail(error)
            self._release(running)

    def _release(self, running: _Running) -> None:
        running.sampler.close()
        running.slot.used = time.monotonic()
        self.running.remove(running)

    def _free_slots(self) -> list[Slot]:
        busy = {id(r.slot) for r in self.running}
        return [slot for slot in self.slots if id(slot) not in busy]

    def _admit(self, job: Job) -> None:
        try:
            slot, tokens = self._choose_slot(job)
            if slot.lora != job.lora:
                self._forget(slot, job.lora)
            self._share_prefix(slot, tokens)
            kept = _common(slot.cache, tokens)
            if kept == len(tokens):
                kept -= 1  # the last prompt token is evaluated again, for its logits
            llama_cpp.llama_memory_seq_rm(self.memory, slot.seq, kept, -1)
            del slot.cache[kept:]
            sampler = job.begin(tokens, kept)
        except Exception as exc:
            job.fail(exc)
            return
        running = _Running(job, slot, sampler, tokens[kept:])
        self.running.append(running)
        # What the grammar forces first (an object's opening) is read with the prompt.
        self._advance(running, lambda: running.sampler.forced(), sampled=0)
        job.deliver()

    def _choose_slot(self, job: Job) -> tuple[Slot, list[int]]:
        """The free slot whose cache holds the longest beginning of the prompt, and the prompt's
        tokens (read on from that slot's last text when the prompt continues it). Among slots
        whose beginnings are about as long, the one that keeps the running sequences' ids
        consecutive, so that a step stays one pass."""
        free = self._free_slots()
        mine = [s for s in free if s.lora == job.lora]
        continued = [s for s in mine if s.text and job.prompt.startswith(s.text)]
        if continued:
            slot = max(continued, key=lambda s: len(s.text))
            rest = job.prompt[len(slot.text) :].encode()
            return slot, slot.tokens + self.llama.tokenize(rest, add_bos=False, special=True)
        tokens = self._tokenize(job.prompt)
        kept = {s.seq: _common(s.cache, tokens) for s in mine}
        most = max(kept.values(), default=0)
        # A beginning up to MIN_SHARED tokens shorter costs those tokens once; a slot apart
        # from the running ones costs a second pass at every step they share.
        near = [s for s in mine if kept[s.seq] > 0 and kept[s.seq] + MIN_SHARED >= most]
        busy = {r.slot.seq for r in self.running}
        return min(
            near or free,
            key=lambda s: (self._passes(busy | {s.seq}), -kept.get(s.seq, 0), s.used),
        ), tokens

    def _passes(self, seqs: set[int]) -> int:
        """The passes llama.cpp computes a step of these sequences in: with a cache buffer per
        slot, one per run of consecutive sequence ids; with a unified cache, one."""
        if self.kv_unified:
            return 1
        return sum(1 for seq in seqs if seq - 1 not in seqs)

    def _tokenize(self, text: str) -> list[int]:
        # A prompt that already starts with the BOS token's text must not get a second one.
        llama = self.llama
        bos = llama.detokenize([llama.token_bos()], special=True).decode(errors="ignore")
        add_bos = not (bos and text.startswith(bos))
        tokens: list[int] = llama.tokenize(text.encode(), add_bos=add_bos, special=True)
        return tokens

    def _forget(self, slot: Slot, lora: str | None) -> None:
        llama_cpp.llama_memory_seq_rm(self.memory, slot.seq, 0, -1)
        slot.cache, slot.lora, slot.text, slot.tokens = [], lora, "", []

    def _share_prefix(self, slot: Slot, tokens: list[int]) -> None:
        """With a unified cache, take a longer beginning of the prompt from another slot: the
        cells are shared, nothing is evaluated again."""
        if not self.kv_unified:
            return
        own = _common(slot.cache, tokens)
        donor = max(
            (s for s in self.slots if s is not slot and s.lora == slot.lora),
            key=lambda s: _common(s.cache, tokens),
            default=None,
        )
        if donor is None:
            return
        shared = min(_common(donor.cache, tokens), len(tokens) - 1)
        if shared < own + MIN_SHARED:
            return
        llama_cpp.llama_memory_seq_rm(self.memory, slot.seq, 0, -1)
        llama_cpp.llama_memory_seq_cp(self.memory, donor.seq, slot.seq, 0, shared)
        slot.cache = donor.cache[:shared]
        slot.text, slot.tokens = "", []

    def _use_lora(self, name: str | None) -> None:
        if name == self.active_lora:
            return
        if name is not None and name not in self.adapters:
            adapter = llama_cpp.llama_adapter_lora_init(self.model, str(self.loras[name]).encode())
            if adapter is None:
                raise ConfigurationError(f"loras[{name!r}]: not a LoRA adapter for this model")
            self.adapters[name] = adapter
        if name is None:
            llama_cpp.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapters[name])
            scales = (ctypes.c_float * 1)(1.0)
            llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, scales)
        self.active_lora = name
        self.lora_steps = 0

    def _group(self) -> list[_Running]:
        """The sequences this step serves: one adapter's, taking turns."""
        loras: list[str | None] = []
        for running in self.running:  # in order of arrival
            if running.job.lora not in loras:
                loras.append(running.job.lora)
        lora = self.active_lora
        if lora not in loras or (len(loras) > 1 and self.lora_steps >= LORA_TURN):
            after = loras.index(lora) + 1 if lora in loras else 0
            lora = loras[after % len(loras)]
        try:
            self._use_lora(lora)
        except ConfigurationError as exc:
            for running in [r for r in self.running if r.job.lora == lora]:
                running.job.fail(exc)
                self._release(running)
            return []
        self.lora_steps += 1
        return [r for r in self.running if r.job.lora == lora]

    def _step(self) -> None:
        group = self._group()
        batch = self.batch
        entries: list[tuple[_Running, int]] = []  # (sequence, batch index) with logits
        # Generating sequences first (one token each), then prompts, as much as fits.
        takes: list[tuple[_Running, int]] = []
        room = self.n_batch
        for running in sorted(group, key=lambda r: len(r.todo) > 1):
            take = min(len(running.todo), PIECE, room)
            if take <= 0:
                break
            takes.append((running, take))
            room -= take
        # In sequence order: with a cache buffer per slot, llama.cpp computes consecutive
        # sequence ids in one pass and splits the step wherever the next id is not the next.
        takes.sort(key=lambda t: t[0].slot.seq)
        n = 0
        for running, take in takes:
            slot = running.slot
            for i in range(take):
                batch.token[n] = running.todo[i]
                batch.pos[n] = len(slot.cache) + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq
                batch.logits[n] = 0
                n += 1
            slot.cache.extend(running.todo[:take])
            del running.todo[:take]
            if not running.todo:
                batch.logits[n - 1] = int(not running.ending)
                entries.append((running, n - 1))
        if n == 0:
            return
        batch.n_tokens = n
        self.widest = max(self.widest, len(takes))
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            error = TransportError(
                f"llama.cpp could not decode a step of {n} tokens (status {status})",
                retryable=True,
            )
            self._abandon(group, error)
            return
        for running, index in entries:
            if running.ending:
                self._finish(running)
            else:
                self._sampled(running, index)
        for running, _ in entries:
            running.job.deliver()

    def _sampled(self, running: _Running, index: int) -> None:
        self._advance(running, lambda: running.sampler.step(self.ctx, index), sampled=1)

    def _advance(self, running: _Running, tokens: Callable[[], list[int]], sampled: int) -> None:
        """Take `tokens()` (the first `sampled` chosen from logits, the rest forced by the
        grammar; evaluated together at the next step), then what a new part's grammar forces."""
        job, slot = running.job, running.slot
        try:
            todo = tokens()
            while todo:
                done: list[int] | bool = False
                for i, token in enumerate(todo):
                    if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                        job.end_of_turn()
                        done = True
                    else:
                        done = job.take(token, forced=i >= sampled)
                    if done is not False:
                        break
                    running.todo.append(token)
                if done is False:
                    return
                if done is True:
                    # Tokens the grammar forced before the end (`"}` and the call's closing)
                    # are the slot's too: the next request continues after them, so they are
                    # evaluated first, as the model evaluates a sampled token before its end.
                    running.ending = bool(running.todo)
                    if not running.ending:
                        self._finish(running)
                    return
                # A new part: the sequence holds `done` before it samples again.
                kept = min(_common(slot.cache, done), len(done) - 1)
                llama_cpp.llama_memory_seq_rm(self.memory, slot.seq, kept, -1)
                del slot.cache[kept:]
                running.todo = done[kept:]
                running.sampler.close()
                running.sampler = job.sampler()
                todo, sampled = running.sampler.forced(), 0
        except Exception as exc:
            job.fail(exc)
            self._release(running)

    def _finish(self, running: _Running) -> None:
        """The generation is over and the cache holds all it wrote: the slot keeps its text."""
        try:
            running.slot.text, running.slot.tokens = running.job.finish()
        except Exception as exc:
            running.job.fail(exc)
        self._release(running)


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
