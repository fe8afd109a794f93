"""An answering session: one model and the docs indexes it retrieves from, opened lazily and
shared by `onboard ask`, the TUI and `onboard serve`, so all three answer the same way.

    session = Session(settings)                      # nothing loaded yet
    job = session.job("How do I start the server?", mode="rag")
    for piece in job.stream(): ...
"""
from __future__ import annotations

import sys
import threading
from typing import Callable, Sequence

from assistant.chat.modes import AnswerJob, check_mode, check_question
from assistant.errors import OnboardError
from assistant.settings import Settings


def open_model(settings: Settings, name: str | None = None):
    """The chat model `name` with the settings' context, threads, seed. Without a name: the model
    chat answers with (settings.model, or the installed fallback for a missing default, with its
    one-line notice), so e.g. `onboard index --precompute-kv` stores blocks for that model."""
    from assistant.llm.chat_model import load_settings_model
    from assistant.llm.registry import chat_model_name, resolve_model

    if not name:
        name, notice = chat_model_name(settings)
        if notice:
            _say(notice)
    return load_settings_model(resolve_model(name, settings), settings)


def answer_penalties(settings: Settings) -> dict:
    """The llama.cpp repetition penalties `settings` ask for, as stream_chat takes them."""
    return {"repeat_penalty": settings.repeat_penalty, "frequency_penalty": settings.frequency_penalty,
            "presence_penalty": settings.presence_penalty}


class Session:
    """A model plus retrievers by index name; both load on first use and are thread-safe."""

    def __init__(self, settings: Settings, model_name: str | None = None, index: str | None = None,
                 progress: bool = True, model=None):
        """`model`: an already loaded ChatModel to answer with (model_name then only labels it)."""
        self.settings, self.progress = settings, progress
        self.notice = None  # set when the default model is missing and another one answers
        if not model_name:
            from assistant.llm.registry import chat_model_name

            model_name, self.notice = chat_model_name(settings)
            if self.notice and progress:
                _say(self.notice)
        self.model_name = model_name
        self.index = index or settings.index
        self._model = model
        self._model_key: str | None = self.model_name if model is not None else None
        self._retrievers: dict[str, object] = {}
        self._model_lock = threading.Lock()
        self._index_lock = threading.Lock()

    @property
    def model_label(self) -> str:
        from assistant.llm.registry import model_label

        return model_label(self.model_name)

    def model_loaded(self, name: str | None = None) -> bool:
        return self._model is not None and self._model_key == (name or self.model_name)

    def model(self):
        """The loaded model (reloaded when model_name changed since)."""
        with self._model_lock:
            if self._model is None or self._model_key != self.model_name:
                self._model = open_model(self.settings, self.model_name)
                self._model_key = self.model_name
            return self._model

    def retriever(self, name: str | None = None, build_first: Callable | None = None):
        """Index NAME opened for searching. `build_first(corpus)` builds the default "docs" index
        on first use when given (the TUI shows a screen meanwhile); otherwise open_retriever does."""
        from assistant.rag import index as index_mod
        from assistant.rag import store

        name = name or self.index
        with self._index_lock:
            if name not in self._retrievers:
                corpus = index_mod.default_corpus_path()
                if (build_first is not None and name == "docs" and corpus is not None
                        and not self.settings.chroma_url and not store.index_exists(self.settings, name)
                        and not store.read_manifest(self.settings, name).get("files")):
                    build_first(corpus)
                self._retrievers[name] = index_mod.open_retriever(self.settings, name, progress=self.progress)
            return self._retrievers[name]

    def reopen_retriever(self, name: str | None = None):
        """Index NAME opened afresh, e.g. after it was re-indexed while open."""
        name = name or self.index
        with self._index_lock:
            self._retrievers.pop(name, None)
        return self.retriever(name)

    def job(self, question: str, mode: str = "plain", index: str | None = None, k: int | None = None,
            history: Sequence[tuple[str, str]] = (), max_tokens: int | None = None,
            temperature: float | None = None, cancel: threading.Event | None = None,
            label: str | None = None) -> AnswerJob:
        """An AnswerJob for `question` (retriever opened for rag/hybrid, model loaded)."""
        check_mode(mode)
        question = check_question(question)  # both before anything loads
        retriever = self.retriever(index) if mode != "plain" else None
        s = self.settings
        return AnswerJob(question, self.model(), mode=mode, retriever=retriever, k=k or s.top_k,
                         history=history, max_tokens=max_tokens or s.max_tokens,
                         temperature=s.temperature if temperature is None else temperature,
                         whole_files_tokens=s.whole_files_tokens,
                         cancel=cancel, model_name=label or self.model_label, penalties=answer_penalties(s),
                         loop=(s.loop_ngram, s.loop_repeats))


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def precompute_kv(settings, name: str, progress: bool) -> None:
    """Store every chunk's KV block for the chat model, so rag skips reading the documents."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from assistant.chat.modes import warm_document_blocks
    from assistant.rag.index import open_retriever

    if settings.kv_cache_mb <= 0:
        raise OnboardError("document KV reuse is off (kv_cache_mb = 0); set kv_cache_mb in config.toml "
                           "or ONBOARD_KV_CACHE_MB to use --precompute-kv")
    model = open_model(settings)
    hits = list(open_retriever(settings, name, progress=False, warm=False).all_hits())
    with Progress(TextColumn(f"[bold]KV blocks[/] {model.name}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), disable=not progress, transient=True) as bar:
        task = bar.add_task("kv", total=len(hits))
        new = warm_document_blocks(model, hits, on_step=lambda: bar.advance(task))
    kv_dir = settings.cache_dir / "kv"
    used = sum(p.stat().st_size for p in kv_dir.glob("*/*.kv")) / 2**20
    _say(f"KV blocks for {model.name}: {len(hits)} chunks ({new} new) in {kv_dir}, "
         f"{used:.0f} of {settings.kv_cache_mb} MB")
    if used >= 0.95 * settings.kv_cache_mb:
        _say("onboard: warning: the KV cache is full, so the oldest blocks were dropped; raise kv_cache_mb "
             "to keep every chunk of this index")
