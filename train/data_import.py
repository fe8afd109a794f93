"""Import existing Q&A pairs (CSV or JSONL) into the same datasets `onboard synth` writes.

    onboard data import ../shared/data/nitro_qa_gpt4.csv --out data/gpt4 [--corpus ./docs]
    summary = import_qa(Path("qa.csv"), Path("data/gpt4"), corpus=Path("docs"))

Input: CSV with a header row containing `question` and `answer` columns (case-insensitive;
`prompt`/`response`, `instruction`/`output` also accepted), or JSONL with one object per line
with the same keys (or a record of qa.jsonl: {"pairs": [...]}). The same filters run (length,
exact and near-duplicate questions); with --corpus every pair is matched to its most similar
chunk by embedding, which enables the grounding filter and the retrieval-aware (RAFT) rows.
dpo.jsonl: rejected = the answer to the most similar question from another source chunk (or
another row, without a corpus) when it says something different: a plausible wrong answer.
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from assistant.errors import OnboardError
from assistant.files import iter_jsonl

KEY_ALIASES = (("question", "answer"), ("prompt", "response"), ("instruction", "output"),
               ("q", "a"))
MIN_MATCH = 0.3  # a pair less similar than this to every chunk keeps no oracle


def _pick_keys(keys) -> tuple[str, str] | None:
    lower = {k.strip().lower(): k for k in keys if isinstance(k, str)}
    for q, a in KEY_ALIASES:
        if q in lower and a in lower:
            return lower[q], lower[a]
    return None


def read_pairs(path: Path) -> list[dict]:
    """[{"question", "answer"}] from CSV or JSONL; one clear error for anything else."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise OnboardError(f"{path} not found: pass a .csv or .jsonl file of question/answer pairs")
    suffix = path.suffix.lower()
    try:
        # bytes, not read_text: universal newlines would turn \r\n inside quoted fields into \n
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OnboardError(f"{path} is not UTF-8 text") from None
    pairs: list[dict] = []
    if suffix in (".jsonl", ".json", ".ndjson"):
        for n, obj in iter_jsonl(path, "one object per line"):
            if isinstance(obj, dict) and isinstance(obj.get("pairs"), list):  # a qa.jsonl record
                pairs += [{"question": p.get("question", ""), "answer": p.get("answer", "")}
                          for p in obj["pairs"] if isinstance(p, dict)]
                continue
            keys = _pick_keys(obj) if isinstance(obj, dict) else None
            if keys is None:
                raise OnboardError(f"{path}:{n}: expected an object with \"question\" and \"answer\"")
            pairs.append({"question": str(obj[keys[0]] or ""), "answer": str(obj[keys[1]] or "")})
    elif suffix in (".csv", ".tsv"):
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        # A file-like object with newline="": line breaks inside quoted fields stay part of the
        # field, and U+2028 / \x0b / \x1c (which str.splitlines splits on) stay characters.
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        keys = _pick_keys(reader.fieldnames or [])
        if keys is None:
            raise OnboardError(f"{path}: the header needs question and answer columns "
                               f"(found: {', '.join(reader.fieldnames or []) or 'none'})")
        try:
            pairs = [{"question": row.get(keys[0]) or "", "answer": row.get(keys[1]) or ""} for row in reader]
        except csv.Error as e:
            raise OnboardError(f"{path}: malformed CSV ({e})") from None
    else:
        raise OnboardError(f"{path}: unsupported file type {suffix or '(none)'}: use .csv or .jsonl")
    if not pairs:
        raise OnboardError(f"{path} holds no question/answer rows")
    return [{"question": " ".join(p["question"].split()), "answer": p["answer"].strip()} for p in pairs]


def _match_chunks(pairs: list[dict], chunks: list, embed) -> None:
    """Give each pair the chunk_id of its most similar chunk (question + answer vs chunk)."""
    import numpy as np

    chunk_vecs = np.asarray(embed([c.embed_text for c in chunks]), dtype=np.float32)
    pair_vecs = np.asarray(embed([f"{p['question']}\n{p['answer']}" for p in pairs]), dtype=np.float32)
    sims = pair_vecs @ chunk_vecs.T
    best = sims.argmax(axis=1)
    for p, j, row in zip(pairs, best, sims):
        if row[j] >= MIN_MATCH:
            p["chunk_id"] = chunks[int(j)].id


def import_qa(path: Path, out_dir: Path, settings=None, corpus: Path | None = None, *,
              distractors: int = 3, p_oracle: float = 0.8, seed: int = 0, filter_config=None,
              cloze_per_chunk: int | None = None) -> dict:
    """Read, filter and format `path` into out_dir (sft.jsonl, dpo.jsonl when possible, card)."""
    from assistant.settings import load_settings
    from train.data_filter import FilterConfig, embed, filter_pairs
    from train.synth_format import corpus_hash, write_card, write_datasets

    settings = settings or load_settings()
    path, out_dir = Path(path).expanduser(), Path(out_dir).expanduser()
    pairs = read_pairs(path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OnboardError(f"cannot create {out_dir}: {e.strerror}") from None
    chunks_by_id, pool, corpus_info = {}, None, None
    if corpus is not None:
        from assistant.rag.chunking import chunk_documents
        from assistant.rag.ingest import load_documents
        from train.synth import MIN_CHUNK_TOKENS

        docs, report = load_documents(Path(corpus).expanduser())
        all_chunks = chunk_documents(docs, settings.chunk_tokens, settings.chunk_overlap)
        usable = [c for c in all_chunks if c.n_tokens >= MIN_CHUNK_TOKENS]
        if usable:
            _match_chunks(pairs, usable, embed)
        pool = [{"chunk_id": c.id, "path": c.path, "heading": c.heading, "text": c.text,
                 "position": c.position} for c in usable]
        chunks_by_id = {c["chunk_id"]: c for c in pool}
        corpus_info = {"path": str(Path(corpus).resolve()), "sha256": corpus_hash(all_chunks),
                       "documents": report.documents, "chunks": len(all_chunks)}
    cfg = filter_config or FilterConfig()
    vectors = embed([p["question"] or " " for p in pairs])
    vec_of = {id(p): v for p, v in zip(pairs, vectors)}
    sources = {cid: c["text"] for cid, c in chunks_by_id.items()}
    kept, dropped = filter_pairs(pairs, sources, cfg, vectors=vectors)
    written = write_datasets(out_dir, kept, chunks=chunks_by_id, pool=pool,
                             vectors=[vec_of[id(p)] for p in kept] if kept else None,
                             distractors=distractors, p_oracle=p_oracle, seed=seed,
                             cloze_per_chunk=cloze_per_chunk)
    summary = {
        "out_dir": str(out_dir), "command": "data import", "source": str(path.resolve()),
        "corpus": corpus_info,
        "settings": {"distractors": distractors, "p_oracle": p_oracle, "seed": seed,
                     **({} if cloze_per_chunk is None else {"cloze_per_chunk": cloze_per_chunk}),
                     "chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap},
        "counts": {"rows": len(pairs), "matched_to_chunk": sum(1 for p in pairs if p.get("chunk_id")),
                   **written["counts"]},
        "filter": {"input": len(pairs), "kept": len(kept), "dropped": dict(dropped), "config": cfg.to_dict()},
        "dpo_rejected_from": written["dpo_rejected_from"],
        "files": written["files"],
    }
    write_card(out_dir, summary)
    return summary
