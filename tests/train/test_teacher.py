"""Teachers: grammar-constrained JSON from the real small GGUF, the same schema over HTTP against
llama-cpp-python's OpenAI-compatible server, and bad replies from a misbehaving server."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistant.errors import OnboardError
from assistant.settings import load_settings
from train.synth import QA_SCHEMA, check_qa
from train.teacher import HttpTeacher, LocalTeacher, open_teacher

MESSAGES = [
    {"role": "system", "content": "You write a question and answer about the excerpt. Reply with JSON only."},
    {"role": "user", "content": "Excerpt:\nNitro listens on port 3928 by default.\n\n"
                                'Reply as JSON: {"question": "...", "answer": "..."}'},
]


# The product schema with short strings: the grammar closes the JSON within ~60 tokens (test speed).
SMALL_SCHEMA = {**QA_SCHEMA, "properties": {
    "question": {"type": "string", "minLength": 12, "maxLength": 90},
    "answer": {"type": "string", "minLength": 8, "maxLength": 120}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_teacher_grammar_output_always_parses(smollm):
    teacher = open_teacher("smollm2-135m", load_settings(n_threads=2))
    assert isinstance(teacher, LocalTeacher) and teacher.model is smollm  # shared cached model
    for seed in (1, 2):
        got = teacher.ask_json(MESSAGES, SMALL_SCHEMA, check_qa, max_tokens=96, seed=seed)
        assert set(got) == {"question", "answer"} and got["question"] and got["answer"]
        assert len(got["question"]) <= 90 and len(got["answer"]) <= 120
    assert teacher.stats.json_first_parsed == 2 and teacher.stats.skipped == 0
    assert teacher.describe()["grammar"] is True


@pytest.fixture(scope="module")
def llama_server(smollm_gguf, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on loopback, started for real."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    log = open(log_path, "wb")  # a file, not a pipe: llama.cpp logs enough to fill a pipe and block
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm_gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "1024", "--n_threads", "2", "--model_alias", "smol",
         "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    import httpx

    deadline = time.time() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail("llama_cpp.server exited: " + log_path.read_text(errors="replace")[-800:])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail("llama_cpp.server did not come up in 90 s: " + log_path.read_text(errors="replace")[-800:])
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_http_teacher_gets_schema_json_from_llama_cpp_server(llama_server):
    teacher = open_teacher(llama_server, load_settings(), model="smol")  # no /v1: added
    assert isinstance(teacher, HttpTeacher) and teacher.base_url.endswith("/v1")
    got = teacher.ask_json(MESSAGES, SMALL_SCHEMA, check_qa, max_tokens=96, seed=3)
    assert got and got["question"] and got["answer"]
    assert teacher.stats.json_first_parsed == 1 and teacher.stats.completion_tokens > 0
    text = teacher.ask_text([{"role": "user", "content": "Say hello."}], max_tokens=8, seed=1)
    assert text


class Scripted(BaseHTTPRequestHandler):
    """Replies from a script: ('json', content) wraps content in a chat completion;
    ('raw', status, body) sends exactly that."""

    script: list = []
    bodies: list = []

    def do_POST(self):
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        step = self.script.pop(0) if self.script else ("json", '{"question": "", "answer": ""}')
        if step[0] == "json":
            status, body = 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": step[1]}}],
                                            "usage": {"completion_tokens": 7}})
        else:
            status, body = step[1], step[2]
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def bad_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    Scripted.script, Scripted.bodies = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", Scripted
    server.shutdown()
    server.server_close()


def test_malformed_replies_are_retried_then_skipped_and_counted(bad_server):
    url, handler = bad_server
    handler.script = [
        ("json", '{"question": "What port?", "answer": "3928"'),   # truncated JSON
        ("raw", 500, "oops"),                                       # server error
        ("json", '{"question": "What port?", "answer": "  "}'),    # empty answer
        # second ask: one bad reply, then a good one
        ("raw", 200, "not json at all"),
        ("json", '{"question": "What port does Nitro use?", "answer": "Port 3928."}'),
    ]
    teacher = HttpTeacher(url, retries=2)
    assert teacher.ask_json(MESSAGES, QA_SCHEMA, check_qa, seed=1) is None
    got = teacher.ask_json(MESSAGES, QA_SCHEMA, check_qa, seed=2)
    assert got == {"question": "What port does Nitro use?", "answer": "Port 3928."}
    s = teacher.stats
    assert (s.requests, s.first_try_ok, s.skipped, s.bad_replies, s.retries) == (2, 0, 1, 4, 3)
    assert (s.json_requests, s.json_first_parsed) == (2, 0)
    # a raw newline inside a string (llama-cpp-python's grammar lets it through) still parses
    handler.script = [("json", '{"question": "What port\nis it?", "answer": "3928"}')]
    assert teacher.ask_json(MESSAGES, QA_SCHEMA, check_qa, seed=3) == {"question": "What port is it?", "answer": "3928"}
    body = handler.bodies[0]
    assert body["response_format"] == {"type": "json_object", "schema": QA_SCHEMA}
    assert handler.bodies[1]["seed"] != handler.bodies[0]["seed"]  # a retry samples anew


def test_unreachable_or_wrong_teacher_url_is_one_clear_error(bad_server):
    port = free_port()
    with pytest.raises(OnboardError, match="cannot reach the teacher"):
        HttpTeacher(f"http://127.0.0.1:{port}/v1", connect_retries=0).ask_json(MESSAGES, QA_SCHEMA)
    url, handler = bad_server
    handler.script = [("raw", 404, "{}")]
    with pytest.raises(OnboardError, match="no /chat/completions"):
        HttpTeacher(url).ask_json(MESSAGES, QA_SCHEMA)
    with pytest.raises(OnboardError, match="must look like"):
        HttpTeacher("ftp://x")
