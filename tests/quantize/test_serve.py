"""The OpenAI-compatible server on loopback with the real SmolLM2 GGUF, driven by the `openai` client."""
from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import openai
import pytest

from assistant.settings import Settings
from quantize.serve import ServerState, create_app, run_in_thread
from tests.quantize.widget_docs import DOCS


@pytest.fixture(scope="module")
def server(smollm, tmp_path_factory):
    """One server for the module, plain by default; rag through a small real Chroma index."""
    from assistant.rag.index import index_path, open_retriever

    home = tmp_path_factory.mktemp("serve_home")
    docs = home / "docs_src"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    settings = Settings(home=home, n_threads=2, max_tokens=16)
    index_path(settings, docs, name="widgetd", progress=False)
    state = ServerState(model=smollm, model_id="nitro-mini", settings=settings, mode="plain",
                        index="widgetd", retriever=open_retriever(settings, "widgetd", progress=False))
    srv, url = run_in_thread(create_app(state))
    yield url, state
    srv.should_exit = True


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=120)


QUESTION = [{"role": "user", "content": "What port does widgetd use by default?"}]


def test_models_lists_the_model_and_its_modes(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["nitro-mini", "nitro-mini:plain", "nitro-mini:rag", "nitro-mini:hybrid"]


def test_non_streaming_answer(client):
    r = client.chat.completions.create(model="nitro-mini", messages=QUESTION, max_tokens=12, temperature=0)
    choice = r.choices[0]
    assert r.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 12 and r.usage.prompt_tokens > 10


def test_streaming_answer(client):
    stream = client.chat.completions.create(model="nitro-mini", messages=QUESTION, max_tokens=12,
                                            temperature=0, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(chunks) >= 3 and text.strip()
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # same request, same greedy answer, streamed or not
    whole = client.chat.completions.create(model="nitro-mini", messages=QUESTION, max_tokens=12, temperature=0)
    assert whole.choices[0].message.content == text.strip()


def test_rag_mode_answers_from_the_index_with_sources(client):
    r = client.chat.completions.create(model="nitro-mini:rag", messages=QUESTION, max_tokens=16, temperature=0)
    assert r.model == "nitro-mini:rag"
    extra = r.model_extra or {}
    assert extra["sources"] and extra["sources"][0]["path"] == "install.md"
    assert "Sources:\n[1] install.md" in r.choices[0].message.content


@pytest.mark.parametrize("body, needle", [
    ({"messages": []}, "messages is empty"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0] must be an object with a role"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
     "the last message must have role 'user'"),
    ({"messages": [{"role": "user", "content": "   "}]}, "the last user message is empty"),
    ({"model": "gpt-4o", "messages": QUESTION}, "model 'gpt-4o' is not served here"),
    ({"messages": QUESTION, "max_tokens": "many"}, "max_tokens"),
    ({"messages": QUESTION, "max_tokens": 100000}, "does not fit the model's 4096-token context"),
    ({"messages": QUESTION, "n": 3}, "n must be 1"),
    ({"messages": QUESTION, "mode": "telepathy"}, "unknown mode 'telepathy'"),
])
def test_bad_requests_get_400_with_a_clear_message(server, body, needle):
    r = httpx.post(server[0] + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["type"] == "invalid_request_error"


def test_bad_request_through_the_openai_client_and_invalid_json(client, server):
    with pytest.raises(openai.BadRequestError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    r = httpx.post(server[0] + "/v1/chat/completions", content=b"{oops",
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"] == "request body is not valid JSON"


def test_concurrent_requests_all_answer(server):
    url = server[0]

    def ask(i: int) -> tuple[int, str]:
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=180)
        msgs = [{"role": "user", "content": f"Name {i + 1} colour(s)."}]
        if i % 2:
            parts = c.chat.completions.create(model="nitro-mini", messages=msgs, max_tokens=8, stream=True)
            return i, "".join(p.choices[0].delta.content or "" for p in parts)
        return i, c.chat.completions.create(model="nitro-mini", messages=msgs, max_tokens=8).choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = dict(pool.map(ask, range(4)))
    assert sorted(answers) == [0, 1, 2, 3] and all(a.strip() for a in answers.values())
    assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"
    assert server[1].waiting == 0


def test_api_key_is_enforced_when_set(server):
    state = server[1]
    state.api_key = "s3cret"
    try:
        r = httpx.get(server[0] + "/v1/models", timeout=10)
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
        ok = httpx.get(server[0] + "/v1/models", headers={"authorization": "Bearer s3cret"}, timeout=10)
        assert ok.status_code == 200
    finally:
        state.api_key = None


def test_serve_command_refuses_unknown_mode(run_cli):
    code, _, err = run_cli("serve", "--mode", "telepathy")
    assert code != 0 and "unknown mode 'telepathy'" in err


def test_loopback_is_the_default_host():
    import argparse

    from assistant.cli.quantize import register

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    args = sub.choices["serve"].parse_args([])
    assert args.host == "127.0.0.1" and args.port == 8000
    assert Path(__file__).name == "test_serve.py"
