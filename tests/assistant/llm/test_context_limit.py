"""n_ctx is capped by the model's trained context and by the memory its KV cache needs, before
llama.cpp allocates anything (issue 20, defect 1: `--ctx -5` grew a process to 13 GB)."""
from __future__ import annotations

import pytest

from assistant.errors import OnboardError
from assistant.llm import context_limit
from assistant.llm.chat_model import ChatModel
from assistant.llm.context_limit import check_context, gguf_header, kv_bytes_per_token


def test_header_of_the_real_model(smollm_gguf):
    h = gguf_header(smollm_gguf)
    assert h["arch"] == "llama" and h["context_length"] == 8192
    # SmolLM2-135M: 30 layers x 3 KV heads x (64 + 64) dims x 2 bytes (f16)
    assert kv_bytes_per_token(h) == 30 * 3 * 128 * 2


@pytest.mark.parametrize("n_ctx,needle", [(-5, "n_ctx must be"), (0, "n_ctx must be"),
                                          (3.7, "whole number"), (100_000, "trained for")])
def test_chat_model_refuses_before_loading(smollm_gguf, n_ctx, needle):
    with pytest.raises(OnboardError, match=needle):
        ChatModel(smollm_gguf, n_ctx=n_ctx, n_threads=1)


def test_memory_estimate_refuses_a_context_that_does_not_fit(smollm_gguf, monkeypatch):
    per_token = kv_bytes_per_token(gguf_header(smollm_gguf))
    monkeypatch.setattr(context_limit, "available_memory_bytes", lambda: per_token * 1000)
    check_context(smollm_gguf, 768)
    with pytest.raises(OnboardError, match=r"GiB of KV cache .* use --ctx 768 or less"):
        check_context(smollm_gguf, 4096)


def test_available_memory_is_read():
    free = context_limit.available_memory_bytes()
    assert free is None or free > 0


def test_cli_ctx_over_trained_context_is_one_line(run_cli):
    code, out, err = run_cli("ask", "--ctx", "65536", "hi")
    assert code != 0 and "trained for" in err and len(err.strip().splitlines()) == 1
