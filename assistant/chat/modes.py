"""Answer modes: plain, rag (retrieve with the question) and hybrid (draft -> retrieve -> answer).

hybrid follows the second reference system: the tuned model first drafts a short answer from
what it learned in training; the question plus that draft is the retrieval query (a draft uses
the docs' own vocabulary, which a short question often lacks); the final answer is written from
the retrieved documents (prompts.py renders them as fenced data).

The mode registry (MODES, check_mode) and the retrieval query (retrieval_query) live here once:
`onboard ask`, the TUI, `onboard serve`, `onboard eval` and `onboard eval-retrieval` all build
the hybrid query through retrieval_query, so what is evaluated is what users get.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from assistant.chat.condense import standalone_question
from assistant.chat.loops import LoopDetector
from assistant.chat.prompts import SYSTEM_DRAFT, SYSTEM_PLAIN, SYSTEM_RAG, document_blocks, rag_user_message
from assistant.chat.whole_files import fit_context
from assistant.errors import OnboardError
from assistant.rag.hits import Hit, Retriever

MODES = ("plain", "rag", "hybrid")

# The draft is a retrieval query, not an answer: two or three sentences in the docs' words are
# what SYSTEM_DRAFT asks for, and 96 tokens holds them without cutting the last one; longer
# drafts cost decode time and drift from the question's topic.
DRAFT_MAX_TOKENS = 96


def check_mode(mode: str, allowed: Sequence[str] = MODES) -> str:
    """The one check (and message) for a mode name given by a user."""
    if mode not in allowed:
        raise OnboardError(f"unknown mode {mode!r}; choose one of: {', '.join(allowed)}")
    return mode


def check_question(question: str | None) -> str:
    """The question stripped, or the one error for an empty one."""
    question = (question or "").strip()
    if not question:
        raise OnboardError('empty question: ask something, e.g. onboard ask "How do I install it?"')
    return question


def draft_answer(model, question: str, cancel: threading.Event | None = None,
                 system: str = SYSTEM_DRAFT, max_tokens: int = DRAFT_MAX_TOKENS) -> str:
    """A short greedy draft (hybrid's first step; HyDE passes its own system prompt)."""
    return model.chat([{"role": "system", "content": system}, {"role": "user", "content": question}],
                      max_tokens=max_tokens, temperature=0.0, cancel=cancel).strip()


def hybrid_query(question: str, draft: str) -> str:
    return f"{question}\n{draft}"


def retrieval_query(model, question: str, mode: str, cancel: threading.Event | None = None
                    ) -> tuple[str, str | None]:
    """(query to search with, the draft or None): the question for rag, question + draft for hybrid."""
    if check_mode(mode) != "hybrid":
        return question, None
    draft = draft_answer(model, question, cancel)
    return hybrid_query(question, draft), draft


@dataclass
class Answer:
    question: str
    mode: str
    model: str
    answer: str = ""
    sources: list[Hit] = field(default_factory=list)
    draft: str | None = None
    timings: dict = field(default_factory=dict)
    stopped: bool = False
    looped: bool = False  # the loop detector ended the answer (chat/loops.py)
    query: str | None = None  # what retrieval searched (follow-ups condensed: condense.py)

    def to_dict(self) -> dict:
        d = {
            "question": self.question, "answer": self.answer, "model": self.model,
            "mode": self.mode, "sources": [h.to_dict() for h in self.sources],
            "timings": self.timings, "tokens_per_s": self.timings.get("tokens_per_s", 0.0),
            "stopped": self.stopped,
        }
        if self.draft is not None:
            d["draft"] = self.draft
        if self.query is not None:
            d["query"] = self.query
        if self.looped:
            d["looped"] = True
        return d


class AnswerJob:
    """One question through one mode. `prepare()` retrieves (TUI shows sources early);
    `stream()` yields answer text; `result` holds the final Answer."""

    def __init__(self, question: str, model, mode: str = "plain", retriever: Retriever | None = None,
                 k: int = 4, history: Sequence[tuple[str, str]] = (), max_tokens: int = 512,
                 temperature: float = 0.2, cancel: threading.Event | None = None,
                 model_name: str | None = None, penalties: dict | None = None, loop: tuple[int, int] = (8, 3),
                 whole_files_tokens: int = 0):
        """`penalties`: llama.cpp repeat/frequency/presence penalties for stream_chat; `loop`:
        (n, repeats) for the LoopDetector that ends an answer repeating an n-token run (0: off)."""
        question = check_question(question)
        check_mode(mode)
        if mode != "plain" and retriever is None:
            raise OnboardError(f"mode {mode} needs a docs index; build one with: onboard index PATH")
        self.model, self.retriever, self.k = model, retriever, k
        self.history, self.max_tokens, self.temperature = list(history), max_tokens, temperature
        self.cancel = cancel or threading.Event()
        self.whole_files_tokens = whole_files_tokens  # whole_files.py; 0: chunks only
        self.penalties, self.loop = dict(penalties or {}), loop
        self.result = Answer(question=question, mode=mode, model=model_name or model.name)
        self._messages: list[dict] | None = None

    # --- steps ---------------------------------------------------------------------------
    def _history_messages(self, budget: int) -> list[dict]:
        msgs: list[dict] = []
        for q, a in reversed(self.history):  # newest first until the budget is spent
            pair = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            cost = self.model.messages_tokens(pair)
            if cost > budget:
                break
            budget -= cost
            msgs[:0] = pair
        return msgs

    def prepare(self) -> list[Hit]:
        if self._messages is not None:
            return self.result.sources
        r, question = self.result, self.result.question
        system = SYSTEM_PLAIN if r.mode == "plain" else SYSTEM_RAG
        room = self.model.n_ctx - self.max_tokens - self.model.messages_tokens(
            [{"role": "system", "content": system}, {"role": "user", "content": question}]) - 32
        if room < 0:
            raise OnboardError(f"question too long for the model's {self.model.n_ctx}-token context")
        history = self._history_messages(room // 4)
        room -= self.model.messages_tokens(history) if history else 0
        user = question
        if r.mode != "plain":
            t = time.perf_counter()
            standalone = standalone_question(self.model, question, self.history, self.cancel)
            if standalone != question:
                r.timings["condense_ms"] = round((time.perf_counter() - t) * 1000, 1)
            t = time.perf_counter()
            r.query, r.draft = retrieval_query(self.model, standalone, r.mode, self.cancel)
            if r.draft is not None:
                r.timings["draft_ms"] = round((time.perf_counter() - t) * 1000, 1)
            t = time.perf_counter()
            hits = self.retriever.search(r.query, self.k)
            r.timings["retrieve_ms"] = round((time.perf_counter() - t) * 1000, 2)
            r.sources, _ = fit_context(self.model, hits, room, self.retriever, self.whole_files_tokens)
            user = rag_user_message(question, r.sources)
        self._messages = [{"role": "system", "content": system}, *history, {"role": "user", "content": user}]
        return r.sources

    @property
    def messages(self) -> list[dict]:
        self.prepare()
        return self._messages

    def stream(self) -> Iterator[str]:
        self.prepare()
        t = time.perf_counter()
        detector = LoopDetector(*self.loop)
        pieces = self.model.stream_chat(self._messages, max_tokens=self.max_tokens, temperature=self.temperature,
                                        cancel=self.cancel, blocks=document_blocks(self.result.sources),
                                        **self.penalties)
        try:
            for piece in pieces:
                yield piece
                if detector.add(piece):
                    self.result.looped = True
                    break
        finally:
            pieces.close()  # ends the generation now (and sets model.last), also after a loop
        self.result.answer = detector.text().strip()
        self.result.stopped = self.cancel.is_set()
        stats = self.model.last
        self.result.timings.update(stats.to_dict())
        self.result.timings["answer_ms"] = round((time.perf_counter() - t) * 1000, 1)

    def run(self) -> Answer:
        for _ in self.stream():
            pass
        return self.result


def warm_document_blocks(model, hits, on_step=None) -> int:
    """Store the KV blocks of `hits` as rag prompts will use them (kv_blocks.py), so that the
    first question that retrieves them already skips reading them; returns how many were new."""
    new = 0
    with model.lock:
        for h in hits:
            messages = [{"role": "system", "content": SYSTEM_RAG}, {"role": "user", "content": rag_user_message("?", [h])}]
            segments, canonical = model.prompt_segments(messages, document_blocks([h]))
            blocks = [s.tokens for s in segments if s.block]
            new += bool(blocks) and model.blocks.warm(blocks[0], canonical)
            if on_step:
                on_step()
    return new
