"""The ONNX Runtime embedder: a real export of the real MiniLM, compared with PyTorch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from assistant.rag import onnx_embedder as oe
from assistant.rag.embedders import embed_query, embed_texts
from assistant.rag.index import DocIndex, open_retriever
from assistant.settings import load_settings

TEXTS = ["How do I install it?", "nitro", "enable continuous batching with 4 parallel slots",
         "What does POST /inferences/llamacpp/loadmodel return when ctx_len is 0? " * 30]  # > 256 pieces


@pytest.fixture
def fresh_encoders(monkeypatch):
    """Forget encoders this process already loaded, so the test exports/loads for real."""
    monkeypatch.setattr(oe, "_LOADED", {})
    monkeypatch.setattr(oe, "_FAILED", set())


def test_export_matches_pytorch_and_lands_atomically(onboard_home, fresh_encoders):
    settings = load_settings()
    enc = oe.get_onnx_embedder(settings)
    assert enc is not None
    path = oe.onnx_path(settings)
    assert enc.path == path and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind
    for text in TEXTS:
        fast, ref = enc.encode(text), embed_query(text)
        assert fast.shape == ref.shape == (384,) and fast.dtype == np.float32
        assert float(np.dot(fast, ref)) > 0.9999
        assert abs(float(np.linalg.norm(fast)) - 1.0) < 1e-5
    many, ref_many = enc.encode_many(TEXTS), embed_texts(TEXTS)
    assert many.shape == ref_many.shape and float((many * ref_many).sum(1).min()) > 0.9999
    # a second process-level load reads the file instead of exporting again
    oe._LOADED.clear()
    mtime = path.stat().st_mtime_ns
    assert oe.get_onnx_embedder(settings, export=False) is not None and path.stat().st_mtime_ns == mtime


def test_search_ranks_as_pytorch_does(nitro_settings, nitro_mcq):
    idx = open_retriever(nitro_settings, "nitro")
    # the index's vectors (ONNX-built on AVX2 CPUs, PyTorch bf16 on AMX) match PyTorch fp32
    stored = idx.collection.get(limit=8, include=["embeddings", "documents", "metadatas"])
    texts = [f"{m['heading']}\n{d}" if m["heading"] else d for d, m in zip(stored["documents"], stored["metadatas"])]
    assert float((np.asarray(stored["embeddings"]) * embed_texts(texts)).sum(1).min()) > 0.999
    questions = [json.loads(line)["question"] for line in nitro_mcq.read_text().splitlines()[:12]]
    for q in questions:
        fast = [h.chunk_id for h in idx.search(q, 5, mode="vector")]
        ref = [h.chunk_id for h in idx.search_vector(embed_query(q), 5)]
        assert fast[:3] == ref[:3] and set(fast) == set(ref), q


def _copy_nitro_home(nitro_settings, tmp_path):
    import shutil

    shutil.copytree(nitro_settings.home / "indexes", tmp_path / "home" / "indexes")
    return load_settings(home=tmp_path / "home", n_threads=2)


def test_damaged_graph_is_exported_again(nitro_settings, fresh_encoders, tmp_path):
    settings = _copy_nitro_home(nitro_settings, tmp_path)
    bad = oe.onnx_path(settings)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not an onnx graph")
    idx = open_retriever(settings, "nitro")
    assert bad.stat().st_size > 10_000_000  # replaced by a real export
    q = "How do I load a GGUF model with llama_model_path?"
    assert [h.chunk_id for h in idx.search(q, 3)] == [h.chunk_id for h in idx.search_vector(embed_query(q), 3)]


def test_unwritable_cache_falls_back_to_pytorch(nitro_settings, fresh_encoders, capsys, tmp_path):
    settings = _copy_nitro_home(nitro_settings, tmp_path)
    settings.cache_dir.mkdir(parents=True)
    (settings.cache_dir / "embedder").write_text("a file where the export folder should be")
    idx = open_retriever(settings, "nitro")
    assert "ONNX embedder unavailable" in capsys.readouterr().err
    assert isinstance(idx, DocIndex) and oe.get_onnx_embedder(settings) is None
    q = "How do I load a GGUF model with llama_model_path?"
    hits = idx.search(q, 3)
    assert len(hits) == 3
    assert [h.chunk_id for h in hits] == [h.chunk_id for h in idx.search_vector(embed_query(q), 3)]
