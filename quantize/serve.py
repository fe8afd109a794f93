"""OpenAI-compatible HTTP server for a local model, answering with retrieval when the mode says so.

    onboard serve --model nitro-135m --index docs --mode rag          # http://127.0.0.1:8000/v1
    curl -s localhost:8000/v1/chat/completions -H 'content-type: application/json' \
         -d '{"model": "nitro-135m", "messages": [{"role": "user", "content": "How do I load a model?"}]}'

Endpoints: POST /v1/chat/completions (stream true/false), GET /v1/models, GET /health.
The request schema is llama-cpp-python's own (`llama_cpp.server.types`), so anything its server
accepts validates here too; streaming is server-sent events (sse-starlette) as OpenAI sends them.
Modes: plain sends the client's messages to the model as they are; rag and hybrid run
an answering session (`assistant.chat.session`, the same as `onboard ask` and the TUI: retrieval, citations, prompt-injection defence) on the last user
message with earlier turns as history. Pick a mode per request with the model id `NAME:rag`
(listed by /v1/models, handy in apps like Jan) or an extra `"mode"` field; default is --mode.

One llama.cpp context serves one request at a time, so a request must never hold the model for
a client that is gone: each generation runs in its own worker thread behind a lock, and the
event loop waits on it while polling for the client's disconnect (streaming or not) and for the
request's deadline; either sets the generation's cancel flag, which the worker checks between
tokens and while queued for the lock. Token counting runs in a thread pool too, so /health and
other clients never wait on the event loop. More than `max_waiting` queued requests get a 503.
The HTTP edge (Host allowlist, API key, body size limit) is `quantize.serve_http`.
Binds to 127.0.0.1 unless told otherwise; set --api-key to require `Authorization: Bearer KEY`.
"""

import collections
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from assistant.chat.modes import MODES, check_mode
from assistant.chat.prompts import SYSTEM_PLAIN
from assistant.chat.session import Session
from assistant.errors import OnboardError
from quantize.serve_generation import ClientGone, Generation
from quantize.serve_http import (Guard, RequestError, error_body, error_response, host_warning,
                                 validation_message)

DEFAULT_PORT = 8000
NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False, "auto_configure": False}
__all__ = ["RequestError", "ServerState", "build_state", "create_app", "error_body", "host_warning",
           "interpret", "make_server", "run_in_thread"]


@dataclass
class ServerState:
    model: Any  # assistant.llm.chat_model.ChatModel
    model_id: str
    settings: Any
    mode: str = "plain"
    index: str | None = None
    retriever: Any = None
    cite_sources: bool = True
    api_key: str | None = None
    max_waiting: int = 16
    request_timeout: float | None = 600.0  # seconds from arrival to the last token, queueing included
    max_body_bytes: int = 1_000_000
    bind_host: str = "127.0.0.1"  # for the Host allowlist (quantize.serve_http.Guard)
    allow_hosts: tuple[str, ...] = ()
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0
    counter_lock: threading.Lock = field(default_factory=threading.Lock)
    recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=256))  # RequestRecords
    session: Any = None  # assistant.chat.session.Session around `model`

    def __post_init__(self):
        if self.session is None:
            self.session = Session(self.settings, model_name=self.model_id, index=self.index, model=self.model)

    def model_ids(self) -> list[str]:
        return [self.model_id, *(f"{self.model_id}:{m}" for m in MODES)]

    def get_retriever(self):
        if self.retriever is None:
            try:
                self.retriever = self.session.retriever()
            except OnboardError as e:
                raise RequestError(f"retrieval is not available: {e}", param="mode") from None
        return self.retriever


# --- request interpretation --------------------------------------------------------------
def _text(content) -> str:
    """OpenAI content is a string or a list of parts; keep the text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise RequestError("message content must be a string or a list of text parts", param="messages")


def _mode(state: ServerState, body) -> str:
    """The answer mode a request asks for: model id `NAME:MODE`, else a `mode` field, else --mode."""
    mode = state.mode
    model = body.model or state.model_id
    if model not in state.model_ids():
        if ":" in model and model.split(":", 1)[0] == state.model_id:
            raise RequestError(f"unknown mode in model id {model!r}; use one of: {', '.join(state.model_ids())}",
                               param="model", code="model_not_found")
        raise RequestError(f"model {model!r} is not served here; use one of: {', '.join(state.model_ids())}",
                           param="model", code="model_not_found")
    if ":" in model:
        mode = model.split(":", 1)[1]
    extra_mode = getattr(body, "mode", None) or (body.model_extra or {}).get("mode")
    if extra_mode is not None:
        try:
            check_mode(extra_mode)
        except OnboardError as e:
            raise RequestError(str(e), param="mode") from None
        mode = extra_mode
    return mode


def _history(messages: list[dict]) -> list[tuple[str, str]]:
    """rag/hybrid: earlier (user, assistant) pairs become history."""
    history, pending = [], None
    for m in messages[:-1]:
        if m["role"] == "user":
            pending = m["content"]
        elif m["role"] == "assistant" and pending is not None:
            history.append((pending, m["content"]))
            pending = None
    return history


def interpret(state: ServerState, body) -> dict:
    """Validated request -> what to run. Raises RequestError with a message a person can act on.
    Counts tokens (CPU work proportional to the body): call it off the event loop."""
    if body.n not in (None, 1):
        raise RequestError("n must be 1: this server returns one choice per request", param="n")
    if body.tools or body.functions:
        raise RequestError("tools/functions are not supported by this server", param="tools")
    mode = _mode(state, body)
    if not body.messages:
        raise RequestError("messages is empty: send at least one message with role 'user'", param="messages")
    messages = [{"role": m["role"], "content": _text(m.get("content"))} for m in body.messages]
    if messages[-1]["role"] != "user":
        raise RequestError(f"the last message must have role 'user' (got {messages[-1]['role']!r})",
                           param="messages")
    if not messages[-1]["content"].strip():
        raise RequestError("the last user message is empty: ask something", param="messages")
    n_ctx = state.model.n_ctx
    max_tokens = body.max_tokens or state.settings.max_tokens
    if max_tokens >= n_ctx:
        raise RequestError(f"max_tokens {max_tokens} does not fit the model's {n_ctx}-token context",
                           param="max_tokens", code="context_length_exceeded")
    temperature = body.temperature if "temperature" in body.model_fields_set else state.settings.temperature
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    if mode == "plain":
        if not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": SYSTEM_PLAIN})
        used = state.model.messages_tokens(messages)
        if used + max_tokens > n_ctx:
            raise RequestError(f"this model's context is {n_ctx} tokens, but the messages take about {used} "
                               f"and max_tokens asks for {max_tokens}: shorten the conversation or lower max_tokens",
                               param="messages", code="context_length_exceeded")
    return {"mode": mode, "messages": messages, "question": messages[-1]["content"], "history": _history(messages),
            "max_tokens": max_tokens, "temperature": temperature, "stop": stop or None,
            "model_name": f"{state.model_id}:{mode}" if mode != state.mode else state.model_id}


# --- the app -----------------------------------------------------------------------------
def _usage(done: dict) -> dict:
    return {k: done[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def _finish_reason(plan: dict, usage: dict) -> str:
    return "length" if usage["completion_tokens"] >= plan["max_tokens"] else "stop"


async def _complete(gen: Generation, request, plan: dict, head: dict) -> dict:
    """The non-streaming answer: every piece, then one chat.completion object."""
    parts = []
    while True:
        kind, value = await gen.next(request)
        if kind == "piece":
            parts.append(value)
        elif kind == "done":
            break
    usage = _usage(value)
    return {**head, "object": "chat.completion", "choices": [{
        "index": 0, "message": {"role": "assistant", "content": "".join(parts).strip()},
        "logprobs": None, "finish_reason": _finish_reason(plan, usage)}],
        "usage": usage, "sources": value["sources"], "timings": value["timings"]}


def _stream(gen: Generation, request, plan: dict, head: dict):
    """The streaming answer: server-sent chat.completion.chunk events, then [DONE]."""
    from sse_starlette.sse import EventSourceResponse
    from starlette.background import BackgroundTask

    def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
        return {"data": json.dumps({**head, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra})}

    async def events():
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                try:
                    kind, value = await gen.next(request)
                except ClientGone:
                    return
                except Exception as e:  # noqa: BLE001 - headers are sent: report in-band, as OpenAI does
                    msg = e.message if isinstance(e, RequestError) else f"{type(e).__name__}: {e}"
                    yield {"data": json.dumps(error_body(msg, code=getattr(e, "code", None), kind="server_error"))}
                    break
                if kind == "piece":
                    yield chunk({"content": value})
                elif kind == "done":
                    usage = _usage(value)
                    yield chunk({}, _finish_reason(plan, usage), usage=usage, sources=value["sources"])
                    break
            yield {"data": "[DONE]"}
        finally:
            gen.stop()  # client gone (sse-starlette cancels us) or stream finished: stop generating

    # the background task also runs when the client left before events() ever started
    return EventSourceResponse(events(), ping=15, background=BackgroundTask(gen.aclose))


async def chat_completions(state: ServerState, request, body):
    """POST /v1/chat/completions: interpret (off the loop), queue the generation, wait for its
    first event so that early errors are proper 4xx, then answer whole or streamed."""
    from fastapi.responses import Response
    from starlette.concurrency import run_in_threadpool

    gen = None
    try:
        plan = await run_in_threadpool(interpret, state, body)
        gen = Generation(state, plan)
        while (await gen.next(request))[0] != "ready":
            pass
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": plan["model_name"]}
        if body.stream:
            response, gen = _stream(gen, request, plan, head), None  # the stream stops it
            return response
        return await _complete(gen, request, plan, head)
    except RequestError as e:
        return error_response(e)
    except ClientGone:
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
    except Exception as e:  # noqa: BLE001 - a worker failure: a 500 with a readable body
        return error_response(RequestError(f"{type(e).__name__}: {e}", code="server_error", status=500))
    finally:
        if gen is not None:
            gen.stop()


def create_app(state: ServerState):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from llama_cpp.server.types import CreateChatCompletionRequest

    class ChatRequest(CreateChatCompletionRequest):
        mode: Optional[str] = None  # onboard extension: plain | rag | hybrid
        model_config = {"extra": "allow"}

    # FastAPI's own OpenTelemetry hooks stay off: no exporter an environment variable could switch on
    app = FastAPI(title="onboard OpenAI-compatible server", version="1", telemetry=NO_TELEMETRY)
    app.add_middleware(Guard, state=state)  # Host, API key, body size: before anything is parsed

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        return JSONResponse(error_body(*validation_message(exc.errors())), status_code=400)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": state.model_id, "mode": state.mode, "waiting": state.waiting}

    @app.get("/v1/models")
    async def models():
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": mid, "object": "model", "created": created, "owned_by": "onboard", "permissions": []}
            for mid in state.model_ids()]}

    @app.post("/v1/chat/completions")
    async def _chat(request: Request, body: ChatRequest):
        return await chat_completions(state, request, body)

    return app


# --- running it --------------------------------------------------------------------------
def build_state(settings, model: str | None = None, index: str | None = None, mode: str | None = None,
                api_key: str | None = None, cite_sources: bool = True, **limits) -> ServerState:
    """`limits`: other ServerState fields (request_timeout, max_body_bytes, bind_host, allow_hosts)."""
    mode = check_mode(mode or "plain")
    session = Session(settings, model_name=model, index=index)
    state = ServerState(model=session.model(), model_id=session.model_label, settings=settings, mode=mode,
                        index=index, api_key=api_key, cite_sources=cite_sources, session=session, **limits)
    if mode != "plain":
        state.retriever = None
        try:
            state.get_retriever()  # fail at start, not on the first request
        except RequestError as e:
            raise OnboardError(f"{e.message}; build one with: onboard index PATH") from None
    return state


def make_server(app, host: str = "127.0.0.1", port: int = DEFAULT_PORT):
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def run_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Start uvicorn in a daemon thread (tests, embedding); returns (server, base_url)."""
    import socket

    if port == 0:  # pick a free loopback port
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    server = make_server(app, host, port)
    thread = threading.Thread(target=server.run, daemon=True, name="onboard-serve")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise OnboardError(f"server did not start on {host}:{port}")
        time.sleep(0.05)
    return server, f"http://{host}:{port}"
