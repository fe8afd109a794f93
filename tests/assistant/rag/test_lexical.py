"""BM25 side of the index (assistant/rag/lexical.py): identifier tokenization, fusion, updates in
step with Chroma (edit/add/delete, kill -9 mid-update), and fused search on the Nitro docs."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.errors import OnboardError
from assistant.rag.chunking import chunk_documents
from assistant.rag.index import index_path, open_retriever
from assistant.rag.ingest import load_documents
from assistant.rag.lexical import LexicalIndex, fts_query, fuse, terms
from assistant.rag.store import index_dir, index_exists
from assistant.settings import load_settings
from tests.assistant.rag.pages import write_pages

ROOT = Path(__file__).resolve().parents[3]


def test_identifiers_stay_whole_and_also_match_their_parts():
    assert terms("--ctx-len") == ["ctx-len", "ctx", "len"]
    assert terms("POST /v1/chat/completions")[1:] == ["v1/chat/completions", "v1", "chat", "complet"]
    assert terms("port 3928") == ["port", "3928"]
    assert terms("set llama_model_path") == ["set", "llama_model_path", "llama", "model", "path"]
    assert terms("llamaModelPath")[0] == "llamamodelpath" and terms("llamaModelPath")[1:] == ["llama", "model", "path"]
    assert terms("curl http://localhost:3928/healthz.")[1:] == [
        "http://localhost:3928/healthz", "http", "localhost", "3928", "healthz"]  # sentence dot dropped
    assert terms("How do I load the models?") == ["load", "model"]  # function words dropped, stemmed
    assert terms("Loading a model") == terms("load models")
    assert fts_query("what is the") is None
    assert fts_query("ctx_len of 2048") == '"ctx_len" OR "ctx" OR "len" OR "2048"'


def test_reciprocal_rank_fusion():
    fused = fuse([["a", "b", "c"], ["c", "d"]], k=60)
    assert [cid for cid, _ in fused] == ["c", "a", "b", "d"]  # in both lists beats first in one
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61)
    assert [cid for cid, _ in fuse([["a", "b"], ["b", "a"]], weights=[2.0, 1.0])] == ["a", "b"]


def _expected_ids(folder: Path) -> set[str]:
    docs, _ = load_documents(folder)
    return {c.id for c in chunk_documents(docs)}


def _lexical_state(settings, name: str) -> tuple[set, int, int]:
    """(chunk ids, chunk rows, full-text rows) of the BM25 file, read without the index code."""
    db = sqlite3.connect(index_dir(settings, name) / "lexical.sqlite")
    try:
        ids = {r[0] for r in db.execute("SELECT id FROM chunks")}
        return ids, db.execute("SELECT count(*) FROM chunks").fetchone()[0], \
            db.execute("SELECT count(*) FROM fts").fetchone()[0]
    finally:
        db.close()


def _write_corpus(folder: Path) -> None:
    write_pages(folder, {name: (f"Start the orchard with `{flag}`.", "Growing fruit needs sun and water. ")
                         for name, flag in [("alpha", "--apple-count"), ("beta", "--banana-mode"),
                                            ("gamma", "--cherry-pit")]})


def test_bm25_follows_edit_add_delete(tmp_path, onboard_home):
    settings = load_settings()
    corpus = tmp_path / "corpus"
    _write_corpus(corpus)
    index_path(settings, corpus, name="fruit", progress=False)
    ids, rows, fts_rows = _lexical_state(settings, "fruit")
    assert ids == _expected_ids(corpus) and rows == fts_rows == len(ids)

    (corpus / "beta.md").write_text("# Beta\n\nBananas now start with `--banana-ripe`.", encoding="utf-8")
    (corpus / "gamma.md").unlink()
    (corpus / "delta.md").write_text("# Delta\n\nDates need `--date-palm` set.", encoding="utf-8")
    stats = index_path(settings, corpus, name="fruit", progress=False)
    ids, rows, fts_rows = _lexical_state(settings, "fruit")
    assert ids == _expected_ids(corpus) and rows == fts_rows == len(ids) == stats.chunks

    idx = open_retriever(settings, "fruit")
    assert [h.path for h in idx.search("--date-palm", 1, mode="bm25")] == ["delta.md"]
    assert [h.path for h in idx.search("--banana-ripe", 1, mode="bm25")] == ["beta.md"]
    assert not any("--banana-mode" in h.text for h in idx.search("--banana-mode", 5, mode="bm25"))  # old text gone
    assert not any(h.path == "gamma.md" for h in idx.search("--cherry-pit", 5, mode="bm25"))


def test_index_without_bm25_file_gets_one_from_the_collection(tmp_path, onboard_home):
    """An index built before BM25 existed (or whose file was deleted) is filled from Chroma."""
    settings = load_settings()
    corpus = tmp_path / "corpus"
    _write_corpus(corpus)
    index_path(settings, corpus, name="fruit", progress=False)
    path = index_dir(settings, "fruit") / "lexical.sqlite"
    for p in path.parent.glob("lexical.sqlite*"):
        p.unlink()
    hits = open_retriever(settings, "fruit").search("--cherry-pit", 1, mode="fused")
    assert hits[0].path == "gamma.md"
    assert _lexical_state(settings, "fruit")[0] == _expected_ids(corpus)


# Blocks inside the BM25 write transaction of the third batch (after Chroma stored that batch)
# until killed: the kill lands in the middle of a BM25 update.
_KILL_SCRIPT = """
import sys, assistant.rag.index as ix, assistant.rag.lexical as lx
from pathlib import Path
from assistant.settings import Settings
ix.WRITE_BATCH = 4
orig, calls = lx.terms, [0]
def terms(text):
    calls[0] += 1
    if calls[0] == 2 * 2 * ix.WRITE_BATCH + 3:  # two terms calls a chunk: 2 batches, then part of one
        print("MID-BM25", flush=True)
        sys.stdin.readline()
    return orig(text)
lx.terms = terms
ix.index_path(Settings(home=Path(sys.argv[1]), n_threads=1), Path(sys.argv[2]), name="killed", progress=False)
print("DONE", flush=True)
"""


def test_kill_9_during_bm25_update_then_rerun_equals_clean_build(tmp_path, nitro_docs):
    home, corpus = tmp_path / "home", tmp_path / "corpus"
    shutil.copytree(nitro_docs / "docs" / "features", corpus)
    env = {**os.environ, "ONBOARD_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(home), str(corpus)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("MID-BM25"):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "indexer finished before it could be killed"
    settings = load_settings(home=home)
    ids, rows, _ = _lexical_state(settings, "killed")
    assert len(ids) == 2 * 4 and not index_exists(settings, "killed")  # the open transaction rolled back

    stats = index_path(settings, corpus, name="killed", progress=False)
    clean = load_settings(home=tmp_path / "clean")
    clean_stats = index_path(clean, corpus, name="killed", progress=False)
    assert _lexical_state(settings, "killed") == _lexical_state(clean, "killed")
    ids, rows, fts_rows = _lexical_state(settings, "killed")
    assert rows == fts_rows == stats.chunks == clean_stats.chunks == len(_expected_ids(corpus))
    query = "how many threads does the server use?"
    assert [h.score for h in open_retriever(settings, "killed").search(query, 5, mode="bm25")] == \
        [h.score for h in open_retriever(clean, "killed").search(query, 5, mode="bm25")]  # same BM25 statistics


def test_fused_finds_exact_identifier_vector_misses(nitro_settings):
    idx = open_retriever(nitro_settings, "nitro")
    for query in ("ignore_eos", "what does ignore_eos do?"):
        assert not any("ignore_eos" in h.text for h in idx.search(query, 1, mode="vector"))
        fused = idx.search(query, 3, mode="fused")
        assert "ignore_eos" in fused[0].text and fused[0].path == "openapi/NitroAPI.yaml"
        assert fused[0].score > fused[-1].score > 0  # RRF scores, best first
    assert all(h.path.endswith("NitroAPI.yaml") for h in idx.search("POST /v1/chat/completions", 3, mode="bm25"))


def test_retrieval_mode_setting_and_errors(nitro_settings, monkeypatch):
    idx = open_retriever(nitro_settings.replace(retrieval="bm25"), "nitro")
    assert idx.search("ignore_eos", 2) == idx.search("ignore_eos", 2, mode="bm25")
    with pytest.raises(OnboardError, match="unknown retrieval mode 'keyword'; choose from: vector, bm25, fused"):
        idx.search("ignore_eos", 2, mode="keyword")
    assert idx.search("how do I", 2, mode="bm25") == []  # nothing but function words
    assert len(idx.search("how do I", 2, mode="fused")) == 2  # the vector side still answers


def test_cli_search_retrieval_option(run_cli, nitro_home_env):
    import json

    code, out, err = run_cli("search", "--index", "nitro", "--retrieval", "bm25", "--json", "ignore_eos")
    assert code == 0, err
    data = json.loads(out)
    assert data["retrieval"] == "bm25" and "ignore_eos" in data["hits"][0]["text"]
    code, out, err = run_cli("search", "--index", "nitro", "--retrieval", "grep", "ignore_eos")
    assert code != 0 and "unknown retrieval mode 'grep'" in err and len(err.strip().splitlines()) == 1


def test_bm25_keeps_the_other_folder_of_an_index_with_two(tmp_path, onboard_home):
    """`onboard index B --add` into an index of A: re-indexing B must not drop A's BM25 rows."""
    settings = load_settings()
    _write_corpus(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "dates.md").write_text("# Dates\n\nDates need `--date-palm`.", encoding="utf-8")
    index_path(settings, tmp_path / "a", name="two", progress=False)
    index_path(settings, tmp_path / "b", name="two", progress=False, add=True)
    (tmp_path / "b" / "dates.md").write_text("# Dates\n\nDates now need `--date-sun`.", encoding="utf-8")
    index_path(settings, tmp_path / "b", name="two", progress=False, add=True)
    idx = open_retriever(settings, "two")
    assert _lexical_state(settings, "two")[0] == set(idx.collection.get(include=[])["ids"])
    assert idx.search("--apple-count", 1, mode="bm25")[0].path == "alpha.md"
    assert idx.search("--date-sun", 1, mode="bm25")[0].path == "dates.md"
    assert not any("--date-palm" in h.text for h in idx.search("--date-palm", 5, mode="bm25"))
