"""Shared fixtures. The egress guard is installed at import, before any test module loads."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import egress_guard

egress_guard.install()
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ONBOARD_SHARED", ROOT.parent / "shared"))
NITRO_DOCS = SHARED / "corpora" / "nitro" / "docs"
NITRO_MCQ = SHARED / "eval" / "nitro_mcq_public.jsonl"
NITRO_QA_CSV = SHARED / "data" / "nitro_qa_gpt4.csv"


@pytest.fixture(autouse=True)
def _guard_and_home(tmp_path_factory, monkeypatch):
    """Every test: egress guard active, a private ONBOARD_HOME and SmolLM2-135M as the model."""
    assert egress_guard.installed(), "egress guard was removed"
    home = tmp_path_factory.mktemp("onboard_home")
    monkeypatch.setenv("ONBOARD_HOME", str(home))
    # Tests answer with the fast model; the default (qwen2.5-coder-1.5b) is for users.
    monkeypatch.setenv("ONBOARD_MODEL", "smollm2-135m")
    yield home


@pytest.fixture
def onboard_home(_guard_and_home) -> Path:
    return _guard_and_home


@pytest.fixture(scope="session")
def smollm_gguf() -> Path:
    """The real default model (SmolLM2-135M-Instruct Q4_1) from its PyPI package."""
    from assistant.llm.registry import resolve_model
    from assistant.settings import Settings

    return resolve_model("smollm2-135m", Settings(home=Path("/nonexistent-not-needed")))


@pytest.fixture(scope="session")
def smollm(smollm_gguf):
    """A loaded ChatModel shared by the session (loading is the slow part)."""
    from assistant.llm.chat_model import load_chat_model

    return load_chat_model(smollm_gguf, n_ctx=4096, n_threads=2, seed=0)


@pytest.fixture(scope="session")
def nitro_docs() -> Path:
    if not NITRO_DOCS.is_dir():
        pytest.skip("../shared/corpora/nitro/docs not present")
    return NITRO_DOCS


@pytest.fixture(scope="session")
def nitro_mcq() -> Path:
    if not NITRO_MCQ.is_file():
        pytest.skip("../shared/eval/nitro_mcq_public.jsonl not present")
    return NITRO_MCQ


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny random llama (hidden 64, 2 layers) with the SmolLM2 tokenizer, saved as HF dir."""
    from train.tiny import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def run_cli(capsys):
    """Run `onboard ...` in-process; returns (exit code, stdout, stderr)."""
    from assistant.cli import main

    def _run(*argv: str):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
