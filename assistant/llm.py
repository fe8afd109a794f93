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
from typing import Iterator

from .errors import OnboardError
from .models import check_gguf


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
def _quiet_stderr():
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

    def __init__(self, path: str | Path, n_ctx: int = 4096, n_threads: int | None = None,
                 seed: int = 0, logits_all: bool = False):
        self.path = check_gguf(Path(path))
        self.lock = threading.RLock()
        import llama_cpp

        try:
            with _quiet_stderr():
                self.llm = llama_cpp.Llama(
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

    @property
    def name(self) -> str:
        return self.path.name

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def messages_tokens(self, messages: list[dict]) -> int:
        """Token count of messages as the chat template renders them (plus small slack)."""
        return sum(self.count_tokens(m["content"]) + 8 for m in messages) + 8

    def stream_chat(self, messages: list[dict], max_tokens: int = 512, temperature: float = 0.2,
                    stop: list[str] | None = None, cancel: threading.Event | None = None,
                    seed: int | None = None) -> Iterator[str]:
        """Yield answer text pieces (one per token); stats land in `self.last` at the end."""
        stats = GenerationStats(prompt_tokens=self.messages_tokens(messages))
        with self.lock:
            start = time.perf_counter()
            stream = self.llm.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=temperature,
                stop=stop, stream=True, seed=self.seed if seed is None else seed,
            )
            try:
                for chunk in stream:
                    delta = chunk["choices"][0]["delta"].get("content")
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
                stats.total_s = time.perf_counter() - start
                self.last = stats

    def chat(self, messages: list[dict], **kw) -> str:
        return "".join(self.stream_chat(messages, **kw))


_CACHE: dict[tuple, ChatModel] = {}
_CACHE_LOCK = threading.Lock()


def load_chat_model(path: str | Path, n_ctx: int = 4096, n_threads: int | None = None,
                    seed: int = 0) -> ChatModel:
    key = (str(Path(path).resolve()), n_ctx, n_threads, seed)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = ChatModel(path, n_ctx=n_ctx, n_threads=n_threads, seed=seed)
        return _CACHE[key]
