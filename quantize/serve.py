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
One llama.cpp context serves one request at a time: requests wait their turn on a lock, each
generation runs in its own worker thread (so the event loop stays free and a client that
disconnects stops its generation), and more than `max_waiting` queued requests get a 503.
Binds to 127.0.0.1 unless told otherwise; set --api-key to require `Authorization: Bearer KEY`.
"""

import asyncio
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

DEFAULT_PORT = 8000
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class RequestError(Exception):
    """A client mistake: becomes a 400 with an OpenAI-style error body."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


def error_body(message: str, param: str | None = None, code: str | None = None,
               kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


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
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0
    counter_lock: threading.Lock = field(default_factory=threading.Lock)
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


def interpret(state: ServerState, body) -> dict:
    """Validated request -> what to run. Raises RequestError with a message a person can act on."""
    if body.n not in (None, 1):
        raise RequestError("n must be 1: this server returns one choice per request", param="n")
    if body.tools or body.functions:
        raise RequestError("tools/functions are not supported by this server", param="tools")
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
    history, pending = [], None
    for m in messages[:-1]:  # rag/hybrid: earlier (user, assistant) pairs become history
        if m["role"] == "user":
            pending = m["content"]
        elif m["role"] == "assistant" and pending is not None:
            history.append((pending, m["content"]))
            pending = None
    return {"mode": mode, "messages": messages, "question": messages[-1]["content"], "history": history,
            "max_tokens": max_tokens, "temperature": temperature, "stop": stop or None,
            "model_name": f"{state.model_id}:{mode}" if mode != state.mode else state.model_id}


# --- generation in a worker thread -------------------------------------------------------
def _sources_text(sources) -> str:
    return "\n\nSources:\n" + "\n".join(f"[{i}] {h.ref}" for i, h in enumerate(sources, 1))


def _worker(state: ServerState, plan: dict, emit, cancel: threading.Event) -> None:
    """Runs in its own thread: holds the model lock for the whole request (llama.cpp contexts are
    single-user), and reports ("ready", sources) / ("piece", text) / ("done", stats) / ("error", exc)."""
    try:
        with state.lock:
            with state.counter_lock:
                state.waiting -= 1
            if cancel.is_set():
                return
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
            stats = model.last
            emit(("done", {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                           "total_tokens": stats.prompt_tokens + stats.completion_tokens,
                           "sources": [h.to_dict() for h in sources], "timings": stats.to_dict()}))
    except OnboardError as e:
        emit(("error", RequestError(str(e))))
    except ValueError as e:  # llama.cpp: "Requested tokens (...) exceed context window of ..."
        emit(("error", RequestError(str(e), code="context_length_exceeded")))
    except Exception as e:  # noqa: BLE001 - reported to the client as a 500, server keeps running
        emit(("error", e))


def start_generation(state: ServerState, plan: dict) -> tuple[asyncio.Queue, threading.Event]:
    with state.counter_lock:
        if state.waiting >= state.max_waiting:
            raise RequestError(f"server busy: {state.waiting} requests already waiting; retry shortly",
                               code="server_busy", status=503)
        state.waiting += 1
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def emit(item):
        loop.call_soon_threadsafe(queue.put_nowait, item)

    threading.Thread(target=_worker, args=(state, plan, emit, cancel), daemon=True,
                     name="onboard-serve-generation").start()
    return queue, cancel


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """pydantic errors -> (one readable line, the offending top-level field)."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return "request body is not valid JSON", None
    problems, param = [], None
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        param = param or (str(loc[0]) if loc else None)
        if len(loc) >= 2 and loc[0] == "messages" and isinstance(loc[1], int):
            line = (f"messages[{loc[1]}] must be an object with a role (system, user or assistant) "
                    "and string content")
        else:
            line = f"{'.'.join(map(str, loc))}: {e.get('msg')}" if loc else str(e.get("msg"))
        if line not in problems:
            problems.append(line)
    return "invalid request: " + "; ".join(problems[:3]), param


# --- the app -----------------------------------------------------------------------------
def create_app(state: ServerState):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from llama_cpp.server.types import CreateChatCompletionRequest
    from sse_starlette.sse import EventSourceResponse

    class ChatRequest(CreateChatCompletionRequest):
        mode: Optional[str] = None  # onboard extension: plain | rag | hybrid
        model_config = {"extra": "allow"}

    app = FastAPI(title="onboard OpenAI-compatible server", version="1")

    def err(e: RequestError) -> JSONResponse:
        kind = "server_busy" if e.status == 503 else "invalid_request_error"
        return JSONResponse(error_body(e.message, e.param, e.code, kind), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        return JSONResponse(error_body(*validation_message(exc.errors())), status_code=400)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if state.api_key and request.url.path.startswith("/v1"):
            if request.headers.get("authorization", "") != f"Bearer {state.api_key}":
                return JSONResponse(error_body("missing or wrong API key (Authorization: Bearer KEY)",
                                               kind="authentication_error", code="invalid_api_key"), 401)
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": state.model_id, "mode": state.mode}

    @app.get("/v1/models")
    async def models():
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": mid, "object": "model", "created": created, "owned_by": "onboard", "permissions": []}
            for mid in state.model_ids()]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, body: ChatRequest):
        try:
            plan = interpret(state, body)
            queue, cancel = start_generation(state, plan)
        except RequestError as e:
            return err(e)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": cid, "created": created, "model": plan["model_name"]}
        try:
            kind, value = await queue.get()
            if kind == "error":
                raise value
        except RequestError as e:
            return err(e)
        except asyncio.CancelledError:
            cancel.set()
            raise
        sources = value

        def finish_reason(usage):
            return "length" if usage["completion_tokens"] >= plan["max_tokens"] else "stop"

        if not body.stream:
            parts = []
            try:
                while True:
                    kind, value = await queue.get()
                    if kind == "piece":
                        parts.append(value)
                    elif kind == "done":
                        break
                    elif kind == "error":
                        raise value
            except asyncio.CancelledError:
                cancel.set()
                raise
            usage = {k: value[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
            return {**head, "object": "chat.completion", "choices": [{
                "index": 0, "message": {"role": "assistant", "content": "".join(parts).strip()},
                "logprobs": None, "finish_reason": finish_reason(usage)}],
                "usage": usage, "sources": value["sources"], "timings": value["timings"]}

        def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
            return {"data": json.dumps({**head, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra})}

        async def events():
            try:
                yield chunk({"role": "assistant", "content": ""})
                while True:
                    kind, value = await queue.get()
                    if kind == "piece":
                        yield chunk({"content": value})
                    elif kind == "done":
                        usage = {k: value[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
                        yield chunk({}, finish_reason(usage), usage=usage, sources=value["sources"])
                        break
                    elif kind == "error":  # headers are sent: report in-band, as OpenAI does
                        msg = value.message if isinstance(value, RequestError) else f"{type(value).__name__}: {value}"
                        yield {"data": json.dumps(error_body(msg, kind="server_error"))}
                        break
                yield {"data": "[DONE]"}
            finally:
                cancel.set()  # client gone or stream finished: stop generating

        del sources
        return EventSourceResponse(events(), ping=15)

    return app


# --- running it --------------------------------------------------------------------------
def build_state(settings, model: str | None = None, index: str | None = None, mode: str | None = None,
                api_key: str | None = None, cite_sources: bool = True) -> ServerState:
    mode = check_mode(mode or "plain")
    session = Session(settings, model_name=model, index=index)
    state = ServerState(model=session.model(), model_id=session.model_label, settings=settings, mode=mode,
                        index=index, api_key=api_key, cite_sources=cite_sources, session=session)
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
