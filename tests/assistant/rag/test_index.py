"""Chroma index: search on the Nitro docs, incremental re-indexing, kill -9 recovery, CLI."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.rag.chunking import chunk_documents
from assistant.rag.index import index_path, open_retriever
from assistant.rag.store import index_exists, read_manifest
from tests.assistant.rag.pages import write_pages
from assistant.rag.ingest import load_documents
from assistant.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]


def _expected_ids(folder: Path) -> set[str]:
    docs, _ = load_documents(folder)
    return {c.id for c in chunk_documents(docs)}


def _stored_ids(settings, name: str) -> list[str]:
    return open_retriever(settings, name, warm=False).collection.get(include=[])["ids"]


def test_nitro_index_and_search(nitro_settings, nitro_docs):
    idx = open_retriever(nitro_settings, "nitro")
    assert idx.count() == len(_expected_ids(nitro_docs))
    hits = idx.search("How do I load a GGUF model into the Nitro server with llama_model_path?", 5)
    assert len(hits) == 5 and hits[0].score >= hits[-1].score
    assert {"docs/features/load-unload.md", "openapi/NitroAPI.yaml"} & {h.path for h in hits}
    assert all(h.text and h.chunk_id and h.ref.startswith(h.path) for h in hits)
    t = time.perf_counter()
    for _ in range(5):
        idx.search("continuous batching", 3)
    assert (time.perf_counter() - t) / 5 < 1.0  # real target (10 ms) lives in bench/retrieval.py


def _write_corpus(folder: Path) -> None:
    write_pages(folder, {name: (f"This page is about {topic}.", f"Growing {topic} needs sun and water. ")
                         for name, topic in [("alpha", "apples"), ("beta", "bananas"), ("gamma", "cherries")]})


def test_incremental_reindex(tmp_path, onboard_home):
    settings = load_settings()
    corpus = tmp_path / "corpus"
    _write_corpus(corpus)
    first = index_path(settings, corpus, name="fruit", progress=False)
    assert first.added == first.chunks > 0 and index_exists(settings, "fruit")
    assert sorted(_stored_ids(settings, "fruit")) == sorted(_expected_ids(corpus))

    noop = index_path(settings, corpus, name="fruit", progress=False)
    assert noop.added == noop.deleted == noop.files_changed == 0
    assert noop.seconds < 2.0

    os.utime(corpus / "alpha.md")  # touched, same bytes: nothing to redo
    assert index_path(settings, corpus, name="fruit", progress=False).added == 0

    (corpus / "beta.md").write_text("# Beta\n\nBananas are now yellow and sweet.", encoding="utf-8")
    (corpus / "gamma.md").unlink()
    (corpus / "delta.md").write_text("# Delta\n\nDates grow on palms.", encoding="utf-8")
    upd = index_path(settings, corpus, name="fruit", progress=False)
    assert upd.files_changed == 2 and upd.added == 2 and upd.deleted > 0
    assert sorted(_stored_ids(settings, "fruit")) == sorted(_expected_ids(corpus))
    hits = open_retriever(settings, "fruit").search("palm trees", 1)
    assert hits[0].path == "delta.md"


_KILL_SCRIPT = """
import sys, assistant.rag.index as ix
from pathlib import Path
from assistant.settings import Settings
ix.WRITE_BATCH = 4
orig = ix.chunk_embedder
def chunk_embedder(settings, progress):
    embed = orig(settings, progress)
    def reporting(texts):
        out = embed(texts)
        print("BATCH", flush=True)
        return out
    return reporting
ix.chunk_embedder = chunk_embedder
ix.index_path(Settings(home=Path(sys.argv[1]), n_threads=1), Path(sys.argv[2]), name="killed", progress=False)
print("DONE", flush=True)
"""


def test_kill_9_mid_index_then_rerun(tmp_path, nitro_docs):
    home = tmp_path / "home"
    corpus = tmp_path / "corpus"
    shutil.copytree(nitro_docs / "docs" / "features", corpus)
    env = {**os.environ, "ONBOARD_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(home), str(corpus)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    batches = 0
    try:
        for line in proc.stdout:
            batches += line.startswith("BATCH")
            if batches == 3:  # some chunks written, most not
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "indexer finished before it could be killed"
    settings = load_settings(home=home)
    assert not index_exists(settings, "killed")  # the manifest says incomplete
    assert read_manifest(settings, "killed").get("complete") is False

    stats = index_path(settings, corpus, name="killed", progress=False)
    ids = _stored_ids(settings, "killed")
    expected = _expected_ids(corpus)
    assert len(ids) == len(set(ids)) == len(expected) == stats.chunks  # no duplicates, none missing
    assert set(ids) == expected
    assert 0 < stats.added < len(expected)  # the killed run's chunks were kept, not redone
    assert index_exists(settings, "killed")


def test_missing_index_error(onboard_home):
    from assistant.errors import OnboardError

    with pytest.raises(OnboardError, match=r"onboard index PATH --index manual"):
        open_retriever(load_settings(), "manual")
    with pytest.raises(OnboardError, match="invalid index name"):
        open_retriever(load_settings(), "../etc")


def test_default_docs_index_is_built_on_first_use(tmp_path, onboard_home, monkeypatch):
    import assistant.rag.index as ix

    assert ix.default_corpus_path() == ROOT / "docs"
    small = tmp_path / "docs"
    small.mkdir()
    (small / "onboard.md").write_text("# onboard\n\nonboard indexes your docs with `onboard index PATH`.",
                                      encoding="utf-8")
    monkeypatch.setattr(ix, "default_corpus_path", lambda: small)
    settings = load_settings()
    assert not index_exists(settings, "docs")
    hits = open_retriever(settings, "docs", progress=False).search("how do I index my docs?", 2)
    assert hits and hits[0].path == "onboard.md"


# --- CLI ---------------------------------------------------------------------------------
def test_cli_search_json(run_cli, nitro_home_env):
    code, out, err = run_cli("search", "--index", "nitro", "--k", "3", "--json", "health", "check", "endpoint")
    assert code == 0, err
    data = json.loads(out)
    assert len(data["hits"]) == 3
    assert set(data["hits"][0]) >= {"path", "heading", "score", "text", "ref"}
    code, out, err = run_cli("search", "--index", "nitro", "what is Nitro?")
    assert code == 0 and out.startswith("[1] ")


@pytest.mark.parametrize("setup,needle", [
    ("empty", "no documents found"),
    ("binary_only", "binary file"),
    ("missing", "does not exist"),
])
def test_cli_index_bad_input(run_cli, tmp_path, setup, needle):
    target = tmp_path / "docs"
    if setup != "missing":
        target.mkdir()
    if setup == "binary_only":
        (target / "a.md").write_bytes(b"\x00\x01" * 50)
    code, out, err = run_cli("index", str(target), "--index", "bad")
    assert code != 0 and needle in err
    assert err.startswith("onboard: error:") and len(err.strip().splitlines()) == 1


def test_cli_index_warns_and_counts(run_cli, tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "ok.md").write_text("# Ok\n\nFine text.", encoding="utf-8")
    (corpus / "bad.txt").write_bytes("d\xe9j\xe0 vu".encode("latin-1"))
    code, out, err = run_cli("index", str(corpus), "--index", "mixed")
    assert code == 0, err
    assert "1 files skipped" in out and "onboard: warning: skipped bad.txt: not valid UTF-8" in err
    code, out, err = run_cli("index", str(corpus), "--index", "mixed", "--json")
    data = json.loads(out)
    assert data["added"] == 0 and data["skipped"][0]["path"] == "bad.txt"


def test_cli_corpus_get(run_cli, tmp_path, monkeypatch):
    local = tmp_path / "nitro-copy"
    (local / "docs").mkdir(parents=True)
    (local / "docs" / "faq.md").write_text("# FAQ\n\nNitro listens on port 3928.", encoding="utf-8")
    code, out, err = run_cli("corpus", "get", "nitro", "--from", str(local))
    assert code == 0, err
    assert "index nitro: 1 files" in out
    code, out, _ = run_cli("search", "--index", "nitro", "--json", "port")
    assert json.loads(out)["hits"][0]["path"] == "docs/faq.md"
    monkeypatch.setenv("ONBOARD_NITRO_REPO", str(tmp_path / "no-such-repo"))  # never touches the network
    code, out, err = run_cli("corpus", "get", "nitro")
    assert code != 0 and "--from DIR" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli("corpus", "get", "wikipedia")
    assert code != 0 and "unknown corpus" in err
