"""Retrieval speed bench: index build, no-op re-index, query latency, and rag vs plain TTFT.

    .venv/bin/python bench/retrieval.py                      # Nitro + large corpus
    .venv/bin/python bench/retrieval.py --skip-large         # Nitro only
    .venv/bin/python bench/retrieval.py --large-max-files 200
    .venv/bin/python bench/retrieval.py --large-random-vectors   # large-corpus latency in minutes

Measured in one run, each against its target:
  * index build chunks/s (Nitro docs, fresh index)
  * no-op re-index seconds                       target <= 1 s
  * query p50 / p95 ms, Nitro                    target p50 <= 10 ms (fused; vector and bm25 shown)
  * query p50 / p95 ms, large corpus             target p50 <= 50 ms (fused; vector and bm25 shown)
    (Debian's python3.11-doc HTML, ~tens of thousands of chunks; installed with apt-get when
    missing and allowed; its index is cached under --home so only the first run embeds it)
  * time to first token, rag / plain (same model, same questions, same run)   target <= 1.3,
    for each of --models (default: SmolLM2-135M and Qwen2.5-Coder-1.5B; one not installed is skipped)
Nitro docs: --nitro DIR (default ../shared/corpora/nitro/docs, or the `onboard corpus get nitro` copy).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PY_DOC = Path("/usr/share/doc/python3.11/html")
QUERIES = [
    "How do I install Nitro on Linux?", "What port does the server listen on?", "load a model with a GGUF path",
    "enable continuous batching", "how many threads does Nitro use", "embedding endpoint request body",
    "what is the default context length", "unload the model", "check server health", "use a grammar to constrain output",
    "stream chat completions with the openai python client", "warm up the model", "self extend long context",
    "vision model with images", "logging configuration",
]
LARGE_QUERIES = [
    "how do I read a file line by line", "sort a list of dictionaries by key", "asyncio gather tasks",
    "what does the with statement do", "format a string with f-strings", "subprocess run capture output",
    "json dumps indent", "datetime timezone aware", "pathlib glob recursive", "dataclass default factory",
    "regular expression named groups", "threading lock example", "argparse subcommands", "unittest mock patch",
    "collections counter most common",
]


def _pcts(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return s[len(s) // 2] * 1000, s[min(len(s) - 1, int(len(s) * 0.95))] * 1000


def _query_latency(idx, queries: list[str], rounds: int, mode: str = "fused") -> tuple[float, float]:
    for q in queries[:3]:
        idx.search(q, 4, mode=mode)  # warm caches
    times = []
    for _ in range(rounds):
        for q in queries:
            t = time.perf_counter()
            idx.search(q, 4, mode=mode)
            times.append(time.perf_counter() - t)
    return _pcts(times)


def _latency_lines(label: str, idx, queries: list[str], rounds: int, target_ms: float) -> bool:
    """p50/p95 of each ranking; the target applies to fused (the default, and the slowest)."""
    for mode in ("vector", "bm25"):
        p50, p95 = _query_latency(idx, queries, rounds, mode)
        _line(f"{label} query p50 / p95 (ms), {mode}", f"{p50:.1f} / {p95:.1f}")
    p50, p95 = _query_latency(idx, queries, rounds, "fused")
    _line(f"{label} query p50 / p95 (ms), fused", f"{p50:.1f} / {p95:.1f}", f"target p50 <= {target_ms:g} ms",
          p50 <= target_ms)
    return p50 <= target_ms


def _line(label: str, value: str, target: str = "", ok: bool | None = None) -> None:
    mark = "" if ok is None else ("  PASS" if ok else "  MISS")
    print(f"{label:44} {value:>14}  {target}{mark}", flush=True)


def _ensure_python_docs(allow_apt: bool) -> Path | None:
    if PY_DOC.is_dir():
        return PY_DOC
    if not allow_apt or shutil.which("apt-get") is None:
        return None
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print("installing python3.11-doc with apt-get (large-corpus bench) ...", file=sys.stderr, flush=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "python3.11-doc"], check=False,
                   stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return PY_DOC if PY_DOC.is_dir() else None


def _subset(src: Path, max_files: int, dst: Path) -> Path:
    """The first N HTML pages (sorted) copied into dst: a reproducible slice of the corpus."""
    if dst.is_dir():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pages = sorted(p for p in src.rglob("*.html") if "_static" not in p.parts)[:max_files]
    for p in pages:
        target = tmp / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    tmp.rename(dst)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nitro", type=Path, default=ROOT.parent / "shared" / "corpora" / "nitro" / "docs")
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "onboard-bench",
                    help="ONBOARD_HOME for the cached large index")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--no-apt", action="store_true", help="never install python3.11-doc")
    ap.add_argument("--large-max-files", type=int, default=0, help="index only the first N pages (0 = all)")
    ap.add_argument("--large-random-vectors", action="store_true",
                    help="store random unit vectors for the large corpus instead of embedding it (~30 min): "
                         "real chunks, BM25 and query embedding, same HNSW size; latency only, not quality")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ttft-questions", type=int, default=5)
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-coder-1.5b",
                    help="comma-separated models for the TTFT ratio")
    args = ap.parse_args()

    from assistant.rag.index import index_path, open_retriever
    from assistant.settings import load_settings

    if not args.nitro.is_dir():
        print(f"Nitro docs not found at {args.nitro}; pass --nitro DIR", file=sys.stderr)
        return 2
    print(f"bench/retrieval.py  cpu={os.cpu_count()}  nitro={args.nitro}", flush=True)
    results_ok = []
    with tempfile.TemporaryDirectory(prefix="onboard-bench-") as tmp:
        settings = load_settings(home=Path(tmp))
        os.environ["ONBOARD_HOME"] = tmp
        build = index_path(settings, args.nitro, name="nitro", progress=False)
        _line("Nitro index build (chunks/s, embedding)", f"{build.chunks_per_s:.1f}",
              f"{build.chunks} chunks in {build.seconds:.1f} s")
        noop = index_path(settings, args.nitro, name="nitro", progress=False)
        results_ok.append(noop.seconds <= 1.0)
        _line("Nitro no-op re-index (s)", f"{noop.seconds:.3f}", "target <= 1 s", results_ok[-1])
        idx = open_retriever(settings, "nitro")
        results_ok.append(_latency_lines("Nitro", idx, QUERIES, args.rounds, 10))
        for name in args.models.split(","):
            ratio = _ttft_ratio(settings, idx, args.ttft_questions, name.strip())
            if ratio is None:
                print(f"  ({name}: not installed - skipped)", flush=True)
                continue
            results_ok.append(ratio <= 1.3)
            _line(f"TTFT rag (stored docs) / plain, {name}", f"{ratio:.2f}", "target <= 1.3", results_ok[-1])

    if not args.skip_large:
        src = _ensure_python_docs(not args.no_apt)
        if src is None:
            print("large corpus: python3.11-doc not installed (apt-get install python3.11-doc) - skipped")
        else:
            home = args.home
            settings = load_settings(home=home)
            os.environ["ONBOARD_HOME"] = str(home)
            corpus = _subset(src, args.large_max_files, home / f"pydoc-{args.large_max_files}") \
                if args.large_max_files else src
            name = f"pydoc{args.large_max_files or ''}"
            if args.large_random_vectors:
                name += "-random"
                _store_random_vectors()
            first = index_path(settings, corpus, name=name, progress=sys.stderr.isatty())
            if first.added:
                what = "random vectors, not embedded" if args.large_random_vectors else "embedding"
                _line(f"large index build (chunks/s, {what})", f"{first.chunks_per_s:.1f}",
                      f"{first.added} chunks in {first.seconds:.0f} s")
            noop = index_path(settings, corpus, name=name, progress=False)
            results_ok.append(noop.seconds <= 1.0)
            _line(f"large no-op re-index (s), {noop.chunks} chunks", f"{noop.seconds:.3f}", "target <= 1 s", results_ok[-1])
            idx = open_retriever(settings, name)
            results_ok.append(_latency_lines("large", idx, LARGE_QUERIES, args.rounds, 50))
    print(f"targets met: {sum(results_ok)}/{len(results_ok)}")
    return 0


def _store_random_vectors() -> None:
    """Index chunks with random unit vectors (MiniLM's 384 dimensions) instead of embeddings."""
    import numpy as np

    import assistant.rag.index as ix

    rng = np.random.default_rng(0)

    def random_unit(texts):
        v = rng.standard_normal((len(texts), 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    ix.chunk_embedder = lambda settings, progress: random_unit


def _ttft_ratio(settings, idx, n: int, model_name: str) -> float | None:
    """Median time to first token of rag over plain, same questions, interleaved, each question
    with nothing cached (as `onboard ask` meets it).

    rag is timed twice: reading its documents (document KV reuse off), and with the documents'
    KV blocks stored beforehand (assistant/llm/kv_blocks.py), as `onboard index --precompute-kv`
    leaves them. The target applies to the second."""
    from assistant.chat.modes import AnswerJob, warm_document_blocks
    from assistant.errors import OnboardError
    from assistant.llm.chat_model import ChatModel
    from assistant.llm.kv_blocks import BlockStore
    from assistant.llm.registry import resolve_model

    try:
        path = resolve_model(model_name, settings)
    except OnboardError:
        return None
    kw = dict(n_ctx=settings.n_ctx, n_threads=settings.n_threads, seed=0)
    reading = ChatModel(path, block_store=None, **kw)
    reusing = ChatModel(path, block_store=BlockStore(memory_mb=8192), **kw)
    t = time.perf_counter()
    # What `onboard index --precompute-kv` stores for every chunk; here only the chunks these
    # questions retrieve (the others would never be read), to keep the bench short.
    hits = list({h.chunk_id: h for q in QUERIES[:n] for h in idx.search(q, 4)}.values())
    warm_document_blocks(reusing, hits)
    warm_s = time.perf_counter() - t
    store = reusing.blocks.store
    print(f"  (stored the KV of {len(hits)} chunks in {warm_s:.0f} s, "
          f"{store._mem_size / 2**20 / max(1, len(hits)):.1f} MB each)", flush=True)
    for model in (reading, reusing):
        AnswerJob("warm up", model, mode="plain", max_tokens=2).run()
    times = {"plain": [], "rag, reading docs": [], "rag, stored docs": []}
    tokens = {"plain": [], "rag": []}
    for q in QUERIES[:n]:
        for label, model, mode in (("plain", reading, "plain"), ("rag, reading docs", reading, "rag"),
                                   ("rag, stored docs", reusing, "rag")):
            model.llm.reset()  # nothing cached, as in a new `onboard ask` process
            t = time.perf_counter()
            job = AnswerJob(q, model, mode=mode, retriever=idx if mode == "rag" else None, k=4, max_tokens=2)
            pieces = job.stream()
            next(pieces, None)  # first token
            times[label].append(time.perf_counter() - t)
            for _ in pieces:
                pass
            tokens[mode].append(job.result.timings.get("prompt_tokens", 0))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"  (median prompt tokens: plain {statistics.median(tokens['plain']):.0f}, rag "
          f"{statistics.median(tokens['rag']):.0f}; TTFT ms: " +
          ", ".join(f"{k} {v * 1000:.0f}" for k, v in med.items()) +
          f"; reading docs / plain = {med['rag, reading docs'] / med['plain']:.1f})", flush=True)
    return med["rag, stored docs"] / med["plain"]


if __name__ == "__main__":
    sys.exit(main())
