"""Turn filtered Q&A records into trl-ready datasets and a dataset card.

Files written (atomically) into the output folder:
  sft.jsonl      conversational prompt/completion rows; each pair twice:
                   * closed-book: the plain-mode system prompt + the question;
                   * with context (RAFT): the rag-mode system prompt + the oracle chunk among
                     `distractors` other chunks (oracle left out with probability 1 - p_oracle,
                     so the model also learns to answer from memory), the answer citing the
                     oracle's number like [2];
                 prompts are built with assistant.chat.prompts' own functions, so training text
                 looks exactly like what `onboard ask/chat` sends at inference time;
  dpo.jsonl      prompt/chosen/rejected (conversational): chosen = the teacher's grounded answer,
                 rejected = the student's closed-book answer where it disagrees (word F1 below
                 a threshold), else the answer to the most similar question from another chunk;
  reading.jsonl      multiple-choice reading rows in the prompt `onboard eval` scores (train/mcq_rows.py):
                 the docs, a question with four options (the answer, near-miss copies of it,
                 answers of the same page that cannot be right too) and the letter; answer-cloze
                 items (an answer with a value the chunk states blanked); teacher-free cloze items;
  prose.jsonl    prose rows (train/mcq_rows.py prose_rows): the RAG answer prompt, the docs, the
                 pairs' written answers with the answering chunk's citation [n]; 0.3 times as
                 many as reading rows (PROSE_STAGE_SHARE), for a short sft stage after the letters;
  rephrase.jsonl {"text": ...} paraphrases of chunks (language-modelling rows);
  card.json / card.md  counts, teacher, settings, corpus hash, filter summary.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections import Counter
from pathlib import Path

from assistant.chat.prompts import SYSTEM_PLAIN, SYSTEM_RAG, cited_answer, rag_user_message
from assistant.files import atomic_write_text
from assistant.rag.hits import Hit
from train.data_filter import token_f1
from train.teacher import call_seed

DISAGREE_F1 = 0.5  # below this word-overlap F1 a student answer counts as a different answer


def chunk_hit(chunk: dict) -> Hit:
    return Hit(path=chunk["path"], heading=chunk.get("heading", ""), text=chunk["text"],
               chunk_id=chunk.get("chunk_id") or chunk.get("id", ""), position=chunk.get("position", 0))


def closed_book_row(question: str, answer: str) -> dict:
    return {"prompt": [{"role": "system", "content": SYSTEM_PLAIN}, {"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": answer}]}


def raft_row(question: str, answer: str, oracle: Hit, pool: list[Hit], distractors: int,
             p_oracle: float, rng: random.Random) -> tuple[dict, bool]:
    """(row, oracle_included). Distractors come from other files where possible (chunks of the
    same page overlap the oracle too much to be true distractors)."""
    others = [h for h in pool if h.path != oracle.path] or [h for h in pool if h.chunk_id != oracle.chunk_id]
    docs = rng.sample(others, min(distractors, len(others)))
    with_oracle = rng.random() < p_oracle
    if with_oracle:
        docs.insert(rng.randrange(len(docs) + 1), oracle)
    completion = cited_answer(answer, docs, oracle) if with_oracle else answer
    row = {"prompt": [{"role": "system", "content": SYSTEM_RAG},
                      {"role": "user", "content": rag_user_message(question, docs)}],
           "completion": [{"role": "assistant", "content": completion}]}
    return row, with_oracle


def dpo_rows(pairs: list[dict], vectors=None, seed: int = 0) -> tuple[list[dict], Counter]:
    """Preference rows from kept pairs; `vectors` (question embeddings, same order) pick hard
    negatives: the answer to the nearest question from a different chunk."""
    rows, kinds = [], Counter()
    sims = None
    if vectors is not None and len(pairs) > 1:
        import numpy as np

        v = np.asarray(vectors, dtype=np.float32)
        sims = v @ v.T
    for i, p in enumerate(pairs):
        chosen, rejected, source = p["answer"], None, None
        student = (p.get("student") or "").strip()
        if student and token_f1(student, chosen) < DISAGREE_F1:
            rejected, source = student, "student"
        elif sims is not None:
            order = sims[i].argsort()[::-1]
            for j in order:
                q = pairs[int(j)]
                if int(j) != i and q.get("chunk_id") != p.get("chunk_id") and \
                        token_f1(q["answer"], chosen) < DISAGREE_F1:
                    rejected, source = q["answer"], "other_chunk"
                    break
        if rejected is None:
            kinds["no_disagreeing_answer"] += 1
            continue
        kinds[source] += 1
        rows.append({"prompt": [{"role": "system", "content": SYSTEM_PLAIN},
                                {"role": "user", "content": p["question"]}],
                     "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}]})
    return rows, kinds


def write_jsonl(path: Path, rows: list[dict]) -> str:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def corpus_hash(chunks) -> str:
    """Content hash of the chunked corpus (order-independent; changes when any chunk does)."""
    h = hashlib.sha256()
    for key in sorted(f"{c.path}\0{c.hash}" for c in chunks):
        h.update(key.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def write_datasets(out_dir: Path, kept: list[dict], *, chunks: dict[str, dict] | None = None,
                   pool: list[dict] | None = None, rephrasings: list[str] = (), vectors=None,
                   distractors: int = 3, p_oracle: float = 0.8, seed: int = 0,
                   cloze_per_chunk: int | None = None) -> dict:
    """Write sft/dpo/rephrase files for kept pairs; returns counts and file hashes. Pairs with a
    "chunk_id" in `chunks` also get a with-context row (pool = distractor candidates)."""
    chunks = chunks or {}
    pool_hits = [chunk_hit(c) for c in (pool or list(chunks.values()))]
    chunk_hits = {cid: chunk_hit(c) for cid, c in chunks.items()}
    sft, n_ctx_rows, n_oracle = [], 0, 0
    for p in kept:
        sft.append(closed_book_row(p["question"], p["answer"]))
        oracle = chunk_hits.get(p.get("chunk_id") or "")
        if oracle is not None:
            rng = random.Random(call_seed(seed, "raft", p["chunk_id"], p["question"]))
            row, with_oracle = raft_row(p["question"], p["answer"], oracle, pool_hits,
                                        distractors, p_oracle, rng)
            sft.append(row)
            n_ctx_rows += 1
            n_oracle += with_oracle
    dpo, dpo_sources = dpo_rows(kept, vectors, seed)
    files = {"sft.jsonl": write_jsonl(out_dir / "sft.jsonl", sft)}
    mcq_counts, prose = {}, []
    if pool_hits:
        from train.mcq_rows import PROSE_STAGE_SHARE, mcq_rows, prose_rows

        mcq, mcq_counts = mcq_rows(kept, chunk_hits, pool_hits, seed=seed, cloze_per_chunk=cloze_per_chunk)
        files["reading.jsonl"] = write_jsonl(out_dir / "reading.jsonl", mcq)
        prose, prose_answers = prose_rows(kept, chunk_hits, pool_hits, math.ceil(PROSE_STAGE_SHARE * len(mcq)),
                                          seed=seed)
        mcq_counts.update(prose=len(prose), prose_answers=prose_answers)
    else:
        (out_dir / "reading.jsonl").unlink(missing_ok=True)
    if prose:
        files["prose.jsonl"] = write_jsonl(out_dir / "prose.jsonl", prose)
    else:
        (out_dir / "prose.jsonl").unlink(missing_ok=True)
    if dpo:
        files["dpo.jsonl"] = write_jsonl(out_dir / "dpo.jsonl", dpo)
    else:
        (out_dir / "dpo.jsonl").unlink(missing_ok=True)
    if rephrasings:
        files["rephrase.jsonl"] = write_jsonl(out_dir / "rephrase.jsonl", [{"text": t} for t in rephrasings])
    else:
        (out_dir / "rephrase.jsonl").unlink(missing_ok=True)  # no stale file from an earlier run
    return {
        "counts": {"pairs": len(kept), "sft": len(sft), "sft_closed_book": len(kept),
                   "sft_with_context": n_ctx_rows, "sft_with_oracle": n_oracle, "dpo": len(dpo),
                   "rephrase": len(rephrasings), **mcq_counts},
        "dpo_rejected_from": dict(dpo_sources),
        "files": files,
    }


def write_card(out_dir: Path, card: dict) -> None:
    card = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **card}
    atomic_write_text(out_dir / "card.json", json.dumps(card, indent=2, default=str) + "\n")
    lines = [f"# Dataset card: {out_dir.name}", "",
             f"Made by `onboard {card.get('command', 'synth')}` on {card['created']}.", ""]
    if card.get("teacher"):
        t = card["teacher"]
        lines += [f"- Teacher: {t.get('name')} ({t.get('kind')}, grammar: {t.get('grammar')})"]
    if card.get("student"):
        lines += [f"- Student (rejected answers): {card['student']}"]
    if card.get("corpus"):
        c = card["corpus"]
        lines += [f"- Corpus: `{c.get('path')}` - {c.get('chunks', '?')} chunks, sha256 `{c.get('sha256', '')[:16]}…`"]
    if card.get("source"):
        lines += [f"- Source file: `{card['source']}`"]
    lines += ["", "## Counts", "", "| what | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in card.get("counts", {}).items()]
    f = card.get("filter", {})
    if f:
        lines += ["", "## Filtering", "", "| outcome | count |", "|---|---|", f"| kept | {f.get('kept')} |"]
        lines += [f"| dropped: {k} | {v} |" for k, v in f.get("dropped", {}).items()]
    if card.get("settings"):
        lines += ["", "## Settings", "", "```json", json.dumps(card["settings"], indent=2), "```"]
    lines += ["", "## Files", ""]
    lines += [f"- `{name}` sha256 `{digest[:16]}…`" for name, digest in card.get("files", {}).items()]
    atomic_write_text(out_dir / "card.md", "\n".join(lines) + "\n")
