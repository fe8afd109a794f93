"""Teachers for data synthesis: a local GGUF through llama-cpp-python, or any OpenAI-compatible
HTTP endpoint (llama.cpp server, llama-cpp-python's server, vLLM, ...) on the local network.

    teacher = open_teacher("qwen2.5-coder-1.5b", settings)       # registry name or .gguf path
    teacher = open_teacher("http://10.0.0.5:8080/v1", settings)  # OpenAI-compatible server
    obj = teacher.ask_json(messages, schema, validate=check, seed=7)   # dict or None

Both get the same JSON schema as `response_format={"type": "json_object", "schema": ...}`: the
local one turns it into a llama.cpp grammar, so its output always parses; a remote server may
or may not enforce it, so every reply is parsed and validated anyway. A reply that does not
parse or validate (bad JSON, empty answer, HTTP 5xx) is retried with another seed, then
skipped and counted in `teacher.stats` - never an exception. Only an unreachable server raises
(OnboardError), because then every later call would fail too.
"""
from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from assistant.errors import OnboardError

DEFAULT_TEACHER = "smollm2-135m"
# Small teachers loop ("1. 1. 1. ...") without a repetition penalty; big ones don't mind it.
REPEAT_PENALTY = 1.15


class BadReply(ValueError):
    """A teacher reply that cannot be used (unparseable, fails validation, empty)."""


@dataclass
class TeacherStats:
    requests: int = 0          # asks (one per wanted item)
    first_try_ok: int = 0      # asks whose first reply parsed and validated
    retries: int = 0           # extra attempts after a bad reply
    skipped: int = 0           # asks given up after all retries
    bad_replies: int = 0       # replies that did not parse / validate
    json_requests: int = 0     # asks for JSON
    json_first_parsed: int = 0  # ... whose first reply was valid JSON (before content checks)
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def first_try_rate(self) -> float:
        return self.first_try_ok / self.requests if self.requests else 0.0

    @property
    def parse_rate(self) -> float:
        """Share of JSON asks whose first reply parsed (the grammar's promise)."""
        return self.json_first_parsed / self.json_requests if self.json_requests else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "first_try_rate": round(self.first_try_rate, 4),
                "parse_rate": round(self.parse_rate, 4)}


def call_seed(*parts) -> int:
    """A stable 31-bit seed from any parts (same chunk + item -> same seed, run after run)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode("utf-8")) & 0x7FFFFFFF


class Teacher:
    """Retry/validate/count logic shared by both transports; subclasses implement `_complete`."""

    name = "teacher"
    kind = "?"

    def __init__(self, retries: int = 2, use_grammar: bool = True):
        self.retries = retries
        self._attempt = 0
        self.use_grammar = use_grammar
        self.stats = TeacherStats()

    def _complete(self, messages: list[dict], schema: dict | None, max_tokens: int,
                  temperature: float, seed: int) -> str:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget cached prompt state (local models), so results don't depend on call history."""

    def ask_text(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.7,
                 seed: int = 0) -> str | None:
        """Free text; empty or failed replies are retried, then None (counted)."""
        return self._ask(messages, None, lambda text: text.strip() or _bad("empty reply"),
                         max_tokens, temperature, seed)

    def ask_json(self, messages: list[dict], schema: dict,
                 validate: Callable[[dict], object] | None = None, *, max_tokens: int = 256,
                 temperature: float = 0.7, seed: int = 0):
        """A JSON object under `schema`; `validate(obj)` returns the cleaned value or raises
        ValueError. Returns that value, or None when every attempt was bad (counted)."""

        def parse(text: str):
            try:
                # strict=False: raw newlines/tabs inside strings are accepted, because the JSON
                # grammar of llama-cpp-python 0.3.36 lets them through (its `char` rule lacks
                # the \x00-\x1F exclusion that llama.cpp's own converter has).
                obj = json.loads(text, strict=False)
            except ValueError:
                raise BadReply(f"not JSON: {text[:80]!r}") from None
            if not isinstance(obj, dict):
                raise BadReply("JSON is not an object")
            if self._attempt == 0:
                self.stats.json_first_parsed += 1
            return validate(obj) if validate else obj

        self.stats.json_requests += 1

        return self._ask(messages, schema if self.use_grammar else None, parse, max_tokens,
                         temperature, seed)

    def _ask(self, messages, schema, parse, max_tokens, temperature, seed):
        self.stats.requests += 1
        start = time.perf_counter()
        try:
            for attempt in range(self.retries + 1):
                self._attempt = attempt
                if attempt:
                    self.stats.retries += 1
                try:
                    text = self._complete(messages, schema, max_tokens, temperature,
                                          call_seed(seed, attempt) if attempt else seed)
                    value = parse(text)
                except (BadReply, ValueError, KeyError, TypeError):
                    self.stats.bad_replies += 1
                    continue
                if attempt == 0:
                    self.stats.first_try_ok += 1
                return value
            self.stats.skipped += 1
            return None
        finally:
            self.stats.seconds += time.perf_counter() - start

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "grammar": self.use_grammar}


def _bad(why: str):
    raise BadReply(why)


class LocalTeacher(Teacher):
    """A GGUF model in this process; the JSON schema becomes a llama.cpp grammar."""

    kind = "gguf"

    def __init__(self, path: Path, *, name: str | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, seed: int = 0, **kw):
        super().__init__(**kw)
        from assistant.llm.chat_model import load_chat_model

        self.path = Path(path)
        self.name = name or self.path.name
        self.model = load_chat_model(self.path, n_ctx=n_ctx, n_threads=n_threads, seed=seed)

    def reset(self) -> None:
        with self.model.lock:
            self.model.llm.reset()

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def _complete(self, messages, schema, max_tokens, temperature, seed) -> str:
        kw = {}
        if schema is not None:
            kw["response_format"] = {"type": "json_object", "schema": schema}
        room = self.model.n_ctx - self.model.messages_tokens(messages) - 8
        if room < 16:
            raise BadReply("prompt does not fit the teacher's context")
        with self.model.lock:
            reply = self.model.llm.create_chat_completion(
                messages=messages, max_tokens=min(max_tokens, room), temperature=temperature,
                seed=seed, repeat_penalty=REPEAT_PENALTY, **kw,
            )
        self.stats.completion_tokens += reply.get("usage", {}).get("completion_tokens", 0)
        return reply["choices"][0]["message"]["content"] or ""

    def describe(self) -> dict:
        from assistant.files import sha256_file

        return {**super().describe(), "path": str(self.path),
                "sha256": sha256_file(self.path) if self.path.stat().st_size < 2e9 else None}


class HttpTeacher(Teacher):
    """An OpenAI-compatible chat endpoint. Same schema; replies are validated all the same."""

    kind = "http"

    def __init__(self, url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout: float = 300.0, connect_retries: int = 3, **kw):
        super().__init__(**kw)
        import httpx

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise OnboardError(f"teacher URL {url!r} must look like http://HOST:PORT/v1")
        base = url.rstrip("/")
        if parsed.path in ("", "/"):
            base += "/v1"  # servers mount the OpenAI API under /v1
        self.base_url = base
        self.model_name = model
        self.name = f"{model or 'default'} @ {base}"
        self.connect_retries = connect_retries
        key = api_key or os.environ.get("ONBOARD_TEACHER_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), headers=headers)

    def _post(self, body: dict):
        import httpx

        for attempt in range(self.connect_retries + 1):
            try:
                return self.client.post(f"{self.base_url}/chat/completions", json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as e:
                if attempt == self.connect_retries:
                    raise OnboardError(f"cannot reach the teacher at {self.base_url}: {e} - is the "
                                       "server running? (the run resumes where it stopped)") from None
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
            except httpx.TimeoutException:
                raise BadReply("request timed out") from None

    def _complete(self, messages, schema, max_tokens, temperature, seed) -> str:
        body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                "seed": seed}
        if self.model_name:
            body["model"] = self.model_name
        if schema is not None:
            body["response_format"] = {"type": "json_object", "schema": schema}
        resp = self._post(body)
        if resp.status_code in (401, 403):
            raise OnboardError(f"teacher at {self.base_url} refused the request (HTTP "
                               f"{resp.status_code}): set ONBOARD_TEACHER_API_KEY")
        if resp.status_code == 404:
            raise OnboardError(f"teacher at {self.base_url} has no /chat/completions (HTTP 404): "
                               "pass the OpenAI base URL, e.g. http://HOST:PORT/v1")
        if resp.status_code >= 400:
            raise BadReply(f"HTTP {resp.status_code}")
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BadReply("reply is not an OpenAI chat completion") from None
        usage = data.get("usage") or {}
        self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        return text or ""

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)  # no tokenizer at hand: ~4 characters a token

    def describe(self) -> dict:
        return {**super().describe(), "url": self.base_url, "model": self.model_name}


def open_teacher(spec: str | None, settings, *, model: str | None = None, retries: int = 2,
                 use_grammar: bool = True) -> Teacher:
    """`spec`: http(s) URL -> HttpTeacher; registry name or .gguf path -> LocalTeacher."""
    from assistant.llm.registry import model_label, resolve_model

    spec = (spec or DEFAULT_TEACHER).strip()
    if spec.startswith(("http://", "https://")):
        return HttpTeacher(spec, model=model, retries=retries, use_grammar=use_grammar)
    path = resolve_model(spec, settings)
    return LocalTeacher(path, name=model_label(spec), n_ctx=settings.n_ctx,
                        n_threads=settings.n_threads, seed=settings.seed, retries=retries,
                        use_grammar=use_grammar)
