"""The server's HTTP edge (quantize.serve_http): Host allowlist against DNS rebinding, the API key
on every path but /health (docs included, constant-time compare), the request body limit, and
which bind addresses count as loopback. A real server on loopback; raw httpx requests."""
from __future__ import annotations

import hmac

import httpx
import pytest

from quantize.serve_http import host_allowlist, host_name, host_warning, is_loopback

QUESTION = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def keyed(plain_server):
    url, state = plain_server
    state.api_key = "s3cret-ключ"
    yield url, state
    state.api_key = None


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:{port}", True), ("localhost:{port}", True), ("[::1]:{port}", True), ("LOCALHOST", True),
    ("evil.example:{port}", False), ("evil.example", False), ("127.0.0.1.nip.io:{port}", False),
    ("192.168.1.20:{port}", False),
])
def test_keyless_loopback_server_answers_only_loopback_host_names(plain_server, host, ok):
    url, _ = plain_server
    r = httpx.get(url + "/v1/models", headers={"host": host.format(port=_port(url))}, timeout=10)
    if ok:
        assert r.status_code == 200, r.text
    else:  # a DNS-rebinding page at evil.example resolving to 127.0.0.1 still sends its own Host
        assert r.status_code == 421, r.text
        assert r.json()["error"]["code"] == "invalid_host" and "--allow-host" in r.json()["error"]["message"]


def test_allow_host_adds_a_name_and_a_key_replaces_the_host_check(plain_server, keyed):
    url, state = plain_server
    state.allow_hosts = ("docs.internal",)
    try:
        # keyed: any Host is fine with the key (a rebinding page does not know it), none without it
        assert httpx.get(url + "/v1/models", headers={"host": "evil.example"}, timeout=10).status_code == 401
        ok = httpx.get(url + "/v1/models", timeout=10,
                       headers={"host": "evil.example", "authorization": f"Bearer {state.api_key}".encode()})
        assert ok.status_code == 200
        state.api_key = None
        assert httpx.get(url + "/health", headers={"host": "docs.internal:80"}, timeout=10).status_code == 200
    finally:
        state.allow_hosts = ()


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/v1/models"])
def test_api_key_guards_the_docs_too(keyed, path):
    url, state = keyed
    r = httpx.get(url + path, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(url + path, headers={"authorization": b"Bearer wrong"}, timeout=10).status_code == 401
    ok = httpx.get(url + path, headers={"authorization": f"Bearer {state.api_key}".encode()}, timeout=10)
    assert ok.status_code == 200
    assert httpx.get(url + "/health", timeout=10).status_code == 200  # liveness stays open


def test_api_key_is_compared_in_constant_time(keyed, monkeypatch):
    url, state = keyed
    calls, compare = [], hmac.compare_digest

    def spy(a, b):
        calls.append((type(a), type(b)))
        return compare(a, b)

    monkeypatch.setattr("quantize.serve_http.hmac.compare_digest", spy)
    r = httpx.get(url + "/v1/models", headers={"authorization": b"Bearer \xff\xfe not ascii"}, timeout=10)
    assert r.status_code == 401  # a mismatch, not a 500 from comparing non-ASCII text
    assert calls == [(bytes, bytes)]


def test_body_over_the_limit_gets_413_before_it_is_parsed(plain_server):
    url, state = plain_server
    big = {"messages": [{"role": "user", "content": "x" * 1_100_000}]}
    r = httpx.post(url + "/v1/chat/completions", json=big, timeout=30)
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["code"] == "request_too_large" and "1,000,000 bytes" in err["message"]

    def chunked():  # no Content-Length: counted while it is read
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"y" * 50_000
        yield b'"}]}'

    r = httpx.post(url + "/v1/chat/completions", content=chunked(), timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    small = httpx.post(url + "/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 2}, timeout=60)
    assert small.status_code == 200, small.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_cross_site_simple_requests_generate_nothing(plain_server, content_type):
    """What a web page may send to 127.0.0.1 without a CORS preflight is refused before the model."""
    url, state = plain_server
    before = len(state.recent)
    body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    r = httpx.post(url + "/v1/chat/completions", timeout=30, content=body,
                   headers={"content-type": content_type, "origin": "https://evil.example"})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    assert len(state.recent) == before


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("127.255.255.254", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("example.com", False),
])
def test_loopback_means_127_0_0_0_8_and_ipv6_loopback(host, loopback):
    assert is_loopback(host) is loopback
    warning = host_warning(host, api_key=None)
    assert (warning is None) is loopback
    if not loopback:
        assert "other machines can reach this server" in warning and "no --api-key" in warning
    assert (host_allowlist(host) is None) is not loopback


def test_host_names_lose_their_port():
    assert [host_name(h) for h in ("localhost:8000", "[::1]:8000", "[::1]", "127.0.0.1", "::1")] == \
        ["localhost", "[::1]", "[::1]", "127.0.0.1", "::1"]
    assert "127.0.0.2" in host_allowlist("127.0.0.2") and "[::1]" in host_allowlist("::1")


def test_serve_options_have_safe_defaults_and_refuse_nonsense():
    import argparse

    from assistant.cli.quantize import register

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    serve = sub.choices["serve"]
    args = serve.parse_args([])
    assert (args.request_timeout, args.max_body_mb, args.allow_host) == (600.0, 1.0, None)
    for bad in (["--request-timeout", "-1"], ["--max-body-mb", "0"], ["--max-body-mb", "nan"]):
        with pytest.raises(SystemExit):
            serve.parse_args(bad)
