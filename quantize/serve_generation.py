"""Generations of `onboard serve`, one worker thread each, and how the event loop waits on them.

The model is single-user, so the worker holds `state.lock` for the whole request. What keeps a
request from holding it for nobody: the worker checks the request's cancel flag between tokens
and while it queues for the lock; the event loop sets the flag when the client disconnects
(polled while waiting for the next piece, streaming or not) or the request's deadline passes.
`RequestRecord`s say how long each request queued and ran and how fast it stopped.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

from assistant.errors import OnboardError
from quantize.serve_http import RequestError

DISCONNECT_POLL_S = 0.25  # how often a waiting request checks that its client is still there
LOCK_POLL_S = 0.2  # how often a queued generation checks whether it was cancelled


@dataclass
class RequestRecord:
    """Timings of one generation (monotonic seconds), kept in `ServerState.recent` for the load
    bench and tests: how long it queued, ran, and how fast it stopped once cancelled."""
    queued_at: float
    started_at: float | None = None
    ended_at: float | None = None
    cancelled_at: float | None = None  # when the client left or the deadline passed
    outcome: str = "queued"  # done | cancelled | gave up waiting | error
    completion_tokens: int = 0

    @property
    def stop_lag_s(self) -> float | None:
        """Seconds the model stayed busy after the cancel (None unless cancelled while running)."""
        if self.outcome != "cancelled" or self.cancelled_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.cancelled_at)



class ClientGone(Exception):
    """The client disconnected while its request waited or generated."""


class CancelEvent(threading.Event):
    """A cancel flag that remembers when it was first set (how fast a generation stops after it)."""
    at: float | None = None

    def set(self) -> None:
        if self.at is None:
            self.at = time.monotonic()
        super().set()


def _sources_text(sources) -> str:
    return "\n\nSources:\n" + "\n".join(f"[{i}] {h.ref}" for i, h in enumerate(sources, 1))


def _acquire(state, cancel: threading.Event) -> bool:
    """Wait for the model, giving up as soon as the request is cancelled (client gone, deadline)."""
    try:
        while not state.lock.acquire(timeout=LOCK_POLL_S):
            if cancel.is_set():
                return False
        if cancel.is_set():
            state.lock.release()
            return False
        return True
    finally:
        with state.counter_lock:
            state.waiting -= 1


def _generate(state, plan: dict, emit, cancel: threading.Event) -> bool:
    """Holding the model: run the plan, reporting ("ready", sources) / ("piece", text) / ("done", stats).
    Returns whether it was cancelled (decided before "done" goes out: after that, the client may stop it)."""
    model, sources = state.model, []
    if plan["mode"] == "plain":
        pieces = model.stream_chat(plan["messages"], max_tokens=plan["max_tokens"],
                                   temperature=plan["temperature"], stop=plan["stop"], cancel=cancel)
    else:
        state.get_retriever()
        job = state.session.job(plan["question"], mode=plan["mode"], history=plan["history"],
                                max_tokens=plan["max_tokens"], temperature=plan["temperature"],
                                cancel=cancel, label=plan["model_name"])
        sources = job.prepare()
        pieces = job.stream()
    ready = False
    for piece in pieces:
        if not ready:
            emit(("ready", sources))
            ready = True
        emit(("piece", piece))
    if not ready:
        emit(("ready", sources))
    if sources and state.cite_sources:
        emit(("piece", _sources_text(sources)))
    cancelled, stats = cancel.is_set(), model.last
    emit(("done", {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                   "total_tokens": stats.prompt_tokens + stats.completion_tokens,
                   "sources": [h.to_dict() for h in sources], "timings": stats.to_dict()}))
    return cancelled


def _worker(state, plan: dict, emit, cancel: CancelEvent, record: RequestRecord) -> None:
    """Runs in its own thread: holds the model lock for the whole request (llama.cpp contexts are
    single-user) and reports what it makes through `emit`; errors are reported, not raised."""
    if not _acquire(state, cancel):
        record.outcome, record.cancelled_at, record.ended_at = "gave up waiting", cancel.at, time.monotonic()
        return
    record.started_at = time.monotonic()
    try:
        record.outcome = "cancelled" if _generate(state, plan, emit, cancel) else "done"
        record.completion_tokens = state.model.last.completion_tokens
    except OnboardError as e:
        record.outcome = "error"
        emit(("error", RequestError(str(e))))
    except ValueError as e:  # llama.cpp: "Requested tokens (...) exceed context window of ..."
        record.outcome = "error"
        emit(("error", RequestError(str(e), code="context_length_exceeded")))
    except Exception as e:  # noqa: BLE001 - reported to the client as a 500, server keeps running
        record.outcome = "error"
        emit(("error", e))
    finally:
        record.ended_at, record.cancelled_at = time.monotonic(), cancel.at
        state.lock.release()


class Generation:
    """One request's generation as the event loop sees it: a worker thread feeding a queue,
    a cancel flag, and a deadline (`state.request_timeout`, counted from arrival)."""

    def __init__(self, state, plan: dict):
        with state.counter_lock:
            if state.waiting >= state.max_waiting:
                raise RequestError(f"server busy: {state.waiting} requests already waiting; retry shortly",
                                   code="server_busy", status=503)
            state.waiting += 1
        self.timeout = state.request_timeout
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancel = CancelEvent()
        self.record = RequestRecord(queued_at=time.monotonic())
        state.recent.append(self.record)
        self.next_check = 0.0  # when next() next asks whether the client is still there
        self.timer = self.loop.call_later(self.timeout, self._expire) if self.timeout else None
        threading.Thread(target=_worker, args=(state, plan, self._emit, self.cancel, self.record), daemon=True,
                         name="onboard-serve-generation").start()

    def _emit(self, item) -> None:  # worker thread -> event loop
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _expire(self) -> None:
        self.cancel.set()
        self.queue.put_nowait(("timeout", None))

    def stop(self) -> None:
        """Finished or abandoned: let the worker go (a no-op once it is done)."""
        self.cancel.set()
        if self.timer is not None:
            self.timer.cancel()

    async def aclose(self) -> None:
        """stop() as a coroutine: runs on the event loop, which owns the deadline timer."""
        self.stop()

    async def next(self, request) -> tuple[str, Any]:
        """The worker's next ("ready" | "piece" | "done", value); meanwhile checks that the
        client is still there. Raises ClientGone, a 504 RequestError past the deadline, or the
        worker's error."""
        while True:
            # checked by the clock, not only when the queue is idle: pieces can arrive faster than the poll
            if time.monotonic() >= self.next_check:
                self.next_check = time.monotonic() + DISCONNECT_POLL_S
                if await request.is_disconnected():
                    self.stop()
                    raise ClientGone()
            try:
                kind, value = await asyncio.wait_for(self.queue.get(), DISCONNECT_POLL_S)
            except TimeoutError:
                continue
            if kind == "timeout":
                raise RequestError(f"the answer took longer than this server's request timeout of {self.timeout:g} s "
                                   "(onboard serve --request-timeout)", code="timeout", status=504)
            if kind == "error":
                raise value
            return kind, value
