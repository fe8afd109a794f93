"""A GGUF chat model through llama-cpp-python, with streaming and honest speed numbers.

The model's own chat template (from GGUF metadata) formats messages: llama-cpp-python picks it
up when no chat_format is forced. Loading is the slow part, so `load_chat_model` caches one
instance per (path, n_ctx, threads, seed).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from assistant.errors import OnboardError
from assistant.llm.context_limit import check_context
from assistant.llm.kv_blocks import BlockPrefill, BlockStore, Segment, two_sequence_context
from assistant.llm.prompt_lookup import PromptLookup, lookup_llama_class
from assistant.llm.registry import check_gguf


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0  # request -> first token
    total_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        # Decode speed: tokens after the first over the time after the first, as llama.cpp
        # reports "eval" speed; falls back to whole-request speed for very short answers.
        decode_s = self.total_s - self.ttft_s
        if self.completion_tokens > 1 and decode_s > 0:
            return (self.completion_tokens - 1) / decode_s
        return self.completion_tokens / self.total_s if self.total_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_ms": round(self.ttft_s * 1000, 1),
            "total_ms": round(self.total_s * 1000, 1),
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


@contextlib.contextmanager
def quiet_stderr():
    """llama.cpp logs model loading to fd 2 from C; keep the user's terminal clean."""
    if os.environ.get("ONBOARD_DEBUG"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class ChatModel:
    """A loaded GGUF model. Thread-safe: one generation at a time (llama.cpp contexts are not)."""

    # Prompt lookup can pay only where answers copy from the prompt: prompts with documents, and
    # greedy decoding. On 2 CPU cores it does not: decoding there is compute-bound, so a decode of
    # n tokens costs about n/2 to n one-token decodes, more than the ~1.9 tokens a check keeps
    # (bench/prompt_lookup.py prints both), so it is off unless a caller asks for it.
    LOOKUP_MAX_TEMPERATURE = 0.0

    def __init__(self, path: str | Path, n_ctx: int = 4096, n_threads: int | None = None,
                 seed: int = 0, logits_all: bool = False, block_store: BlockStore | None = None,
                 prompt_lookup: bool = False):
        self.path = check_gguf(Path(path))
        check_context(self.path, n_ctx)  # llama.cpp would allocate whatever n_ctx asks for
        self.lock = threading.RLock()

        try:
            with quiet_stderr(), two_sequence_context():
                self.llm = lookup_llama_class()(
                    model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                    seed=seed, verbose=False, logits_all=logits_all,
                )
        except (ValueError, RuntimeError, OSError) as e:
            raise OnboardError(f"cannot load model {self.path}: {e} (truncated or unsupported GGUF?)") from None
        # Close before interpreter teardown: Llama.__del__ during shutdown prints a spurious
        # "Exception ignored ... TypeError" once module globals are gone.
        atexit.register(self.llm.close)
        self.n_ctx = self.llm.n_ctx()
        self.seed = seed
        self.last = GenerationStats()
        self.formatter = _chat_formatter(self.llm)
        # Document KV reuse (kv_blocks.py) is on when blocks.enabled: a store was given and
        # the context can shift positions.
        # The store's key names the file's version, not only its path: a rebuilt model under the
        # same name has the same path and, quantized alike, the same size.
        stat = self.path.stat()
        self.blocks = BlockPrefill(self.llm, block_store if self.formatter else None,
                                   f"{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
        # Drafts tokens for answers over documents (prompt_lookup.py); None turns it off.
        self.prompt_lookup: PromptLookup | None = PromptLookup() if prompt_lookup else None

    @property
    def name(self) -> str:
        return self.path.name

    def forget_kv(self, memory_mb: int = 512) -> None:
        """Empty the context and start a new, memory-only document store, as a new process has.
        Why: llama.cpp's arithmetic depends a little on where cells sit in the KV cache, so a
        block loaded from the disk store, or a prompt start kept from an earlier prompt, moves
        letter log-probs by a few hundredths. Evaluations call this so that their numbers do not
        depend on what earlier runs left on disk: the same base GGUF scored 42.5 % in one build
        and 46.0 % in another before (docs/results/specialist-qwen0.5b.md, build v9)."""
        with self.lock:
            self.llm.reset()
            self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            if self.blocks.store is not None:
                self.blocks.store = BlockStore(memory_mb=memory_mb)

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def messages_tokens(self, messages: list[dict]) -> int:
        """Token count of messages as the chat template renders them (plus small slack)."""
        return sum(self.count_tokens(m["content"]) + 8 for m in messages) + 8

    def render(self, messages: list[dict]) -> tuple[str, bool]:
        """The prompt text the model's chat template makes of `messages`, and whether BOS is added."""
        r = self.formatter(messages=messages)
        return r.prompt, not r.added_special

    def prompt_segments(self, messages: list[dict], blocks: Sequence[str] = ()
                        ) -> tuple[list[Segment], list[int]]:
        """Tokens of the rendered prompt, split so that each of `blocks` (document texts, in
        prompt order) is its own segment; plus the canonical prefix blocks are encoded after:
        the prompt's start up to the first block as it reads without chat history."""
        text, add_bos = self.render(messages)
        tok = self.llm.tokenize
        segments, pos = [], 0
        for block in blocks:
            at = text.find(block, pos)
            if at < 0:
                break
            segments.append(Segment(tok(text[pos:at].encode(), add_bos=add_bos and pos == 0, special=True)))
            # Documents are data: special=False, so control tokens inside them stay plain text.
            segments.append(Segment(tok(block.encode(), add_bos=False, special=False), block=True))
            pos = at + len(block)
        segments.append(Segment(tok(text[pos:].encode(), add_bos=add_bos and pos == 0, special=True)))
        canonical: list[int] = []
        if blocks and len(segments) > 1:
            canonical = segments[0].tokens
            if len(messages) > 2:  # with history: encode blocks as if the history were absent
                bare, _ = self.render([messages[0], messages[-1]])
                at = bare.find(blocks[0])
                canonical = tok(bare[:at].encode(), add_bos=add_bos, special=True) if at > 0 else []
        return [s for s in segments if s.tokens], canonical

    def stream_chat(self, messages: list[dict], max_tokens: int = 512, temperature: float = 0.2,
                    stop: list[str] | None = None, cancel: threading.Event | None = None,
                    seed: int | None = None, blocks: Sequence[str] = (), repeat_penalty: float = 1.0,
                    frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> Iterator[str]:
        """Yield answer text pieces (one per token); stats land in `self.last` at the end.

        `blocks` are the document texts inside the messages: with document KV reuse on, their
        keys/values come from the block store instead of being read again. The penalties are
        llama.cpp's (over the last 64 tokens); they apply under greedy decoding too."""
        stats = GenerationStats(prompt_tokens=self.messages_tokens(messages))
        seed = self.seed if seed is None else seed
        penalties = dict(repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                         presence_penalty=presence_penalty)
        with self.lock:
            start = time.perf_counter()
            # llama-cpp-python's generate drafts with whatever draft_model the Llama holds.
            self.llm.draft_model = (self.prompt_lookup if blocks and temperature <= self.LOOKUP_MAX_TEMPERATURE
                                    else None)
            if blocks and self.blocks.enabled:
                tokens = self.blocks.prefill(*self.prompt_segments(messages, blocks))
                stats.prompt_tokens = len(tokens)
                stream = self.llm.create_completion(prompt=tokens, max_tokens=max_tokens, temperature=temperature,
                                                    stop=stop, stream=True, seed=seed, **penalties)
                text_of = lambda c: c["choices"][0].get("text")  # noqa: E731
            else:
                stream = self.llm.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=temperature,
                    stop=stop, stream=True, seed=seed, **penalties,
                )
                text_of = lambda c: c["choices"][0]["delta"].get("content")  # noqa: E731
            try:
                for chunk in stream:
                    delta = text_of(chunk)
                    if not delta:
                        continue
                    if stats.completion_tokens == 0:
                        stats.ttft_s = time.perf_counter() - start
                    stats.completion_tokens += 1
                    yield delta
                    if cancel is not None and cancel.is_set():
                        break
            finally:
                stream.close()
                self.llm.draft_model = None
                stats.total_s = time.perf_counter() - start
                self.last = stats

    def chat(self, messages: list[dict], **kw) -> str:
        return "".join(self.stream_chat(messages, **kw))


def _chat_formatter(llm):
    """The GGUF's own chat template as a formatter, or None for a base model without one."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    tok = lambda i: llm._model.token_get_text(i) if i >= 0 else ""  # noqa: E731
    return Jinja2ChatFormatter(template=template, eos_token=tok(llm.token_eos()), bos_token=tok(llm.token_bos()))


_CACHE: dict[tuple, ChatModel] = {}
_CACHE_LOCK = threading.Lock()


def load_chat_model(path: str | Path, n_ctx: int = 4096, n_threads: int | None = None,
                    seed: int = 0, kv_reuse: bool = True, kv_cache_dir: Path | None = None,
                    kv_cache_mb: int = 0) -> ChatModel:
    """A cached ChatModel; `kv_reuse` stores document KV blocks in memory and, with
    `kv_cache_dir` and `kv_cache_mb` > 0, on disk so later processes reuse them too."""
    key = (str(Path(path).resolve()), n_ctx, n_threads, seed, kv_reuse)
    with _CACHE_LOCK:
        if key not in _CACHE:
            store = BlockStore() if kv_reuse else None
            _CACHE[key] = ChatModel(path, n_ctx=n_ctx, n_threads=n_threads, seed=seed, block_store=store)
        model = _CACHE[key]
        if model.blocks.enabled and kv_cache_dir is not None and kv_cache_mb > 0:
            model.blocks.store.attach_disk(kv_cache_dir, kv_cache_mb)
        return model


def load_eval_model(path: str | Path, settings) -> ChatModel:
    """load_settings_model for an evaluation: what it scores does not depend on earlier runs
    (ChatModel.forget_kv); blocks are still reused within the evaluation, in memory up to the
    disk store's size (kv_cache_mb) so that an evaluation re-reads no more than it did with it."""
    return for_evaluation(load_settings_model(path, settings), settings)


def for_evaluation(model: ChatModel, settings) -> ChatModel:
    """`model` emptied for an evaluation (forget_kv), its memory store as large as the disk's."""
    model.forget_kv(memory_mb=max(512, settings.kv_cache_mb))
    return model


def load_settings_model(path: str | Path, settings) -> ChatModel:
    """load_chat_model with the context, threads, seed and KV reuse that `settings` ask for."""
    return load_chat_model(path, n_ctx=settings.n_ctx, n_threads=settings.n_threads, seed=settings.seed,
                           kv_reuse=settings.kv_cache_mb > 0, kv_cache_dir=settings.cache_dir / "kv",
                           kv_cache_mb=settings.kv_cache_mb)
