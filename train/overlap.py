"""Never train on evaluation questions: find training rows whose question nearly repeats an MCQ
item's question (cosine of MiniLM embeddings, the index's embedder), drop them, report.

    onboard data check-overlap data/gpt4 --mcq ../shared/eval/nitro_mcq_public.jsonl
    report = check_overlap(Path("data/gpt4"), Path("mcq.jsonl"), threshold=0.9)

Every row of sft.jsonl, dpo.jsonl, reading.jsonl and prose.jsonl is reduced to its questions (each user turn; for a
with-context turn the text after its final "Question: ", without the options of an MCQ row), each distinct question is embedded once
and compared with every MCQ question. Rows with a question at or above `threshold` are removed from the files
(rewritten atomically; the removed rows go to overlap-dropped.jsonl so nothing is lost) and the
report - counts, the distribution of each training question's nearest-MCQ similarity, the
closest pairs - is written to overlap.json. A second run finds nothing left to drop.
0.9 is a near-duplicate: the same question reworded. Lower values catch questions about the same
fact, which is the point of training on the docs, not a leak.
"""
from __future__ import annotations

import json
from pathlib import Path

from assistant.errors import OnboardError
from assistant.files import atomic_write_text

FILES = ("sft.jsonl", "dpo.jsonl", "reading.jsonl", "prose.jsonl")
DEFAULT_THRESHOLD = 0.9
BINS = (-1.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.01)


def question_of(text: str) -> str:
    """A user turn reduced to its question: after a with-context row's final "Question: " (or a
    later turn's leading one), without the options of an MCQ row."""
    marker = "Question: "
    if marker in text and text.startswith(("Documents:", "(No documents matched.)", marker)):
        text = text.rsplit(marker, 1)[1]
    text = text.split("\n\nA. ", 1)[0]  # a multiple-choice row (reading.jsonl): the question without its options
    return " ".join(text.split())


def row_questions(row: dict) -> list[str]:
    """The questions a training row asks (what an evaluation item could repeat): every user
    turn, so a multi-question reading row is checked question by question."""
    messages = row.get("prompt") or row.get("messages") or []
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return [q for q in (question_of(u) for u in users) if q]


def _read_rows(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise OnboardError(f"{path}:{n}: not a JSON line") from None
    return rows


def _histogram(sims) -> list[dict]:
    out = []
    for lo, hi in zip(BINS, BINS[1:]):
        n = int(((sims >= lo) & (sims < hi)).sum())
        out.append({"from": lo, "to": min(hi, 1.0), "questions": n})
    return out


def similarity_report(questions: list[str], mcq_questions: list[str], embed) -> tuple[list[float], list[int]]:
    """For each training question: (cosine to its nearest MCQ question, that item's index)."""
    import numpy as np

    q = np.asarray(embed(questions), dtype=np.float32)
    m = np.asarray(embed(mcq_questions), dtype=np.float32)
    sims = q @ m.T
    best = sims.argmax(axis=1)
    return [float(sims[i, j]) for i, j in enumerate(best)], [int(j) for j in best]


def check_overlap(data_dir: Path, mcq: Path, threshold: float = DEFAULT_THRESHOLD, drop: bool = True,
                  embed=None, top: int = 10) -> dict:
    """Check (and with `drop`, remove) training rows whose question is a near-duplicate of an MCQ
    question; returns the report also written to DATA_DIR/overlap.json."""
    import numpy as np

    from assistant.eval.mcq import read_mcq

    if embed is None:
        from train.data_filter import embed
    data_dir = Path(data_dir).expanduser()
    if not 0.0 < threshold <= 1.0:
        raise OnboardError(f"--threshold {threshold}: give a cosine similarity between 0 and 1, e.g. 0.9")
    present = [f for f in FILES if (data_dir / f).is_file()]
    if not present:
        raise OnboardError(f"{data_dir} holds no sft.jsonl or dpo.jsonl: pass the --out folder of "
                           "`onboard synth` or `onboard data import`")
    items = read_mcq(mcq, warn=lambda m: None)
    rows = {f: _read_rows(data_dir / f) for f in present}
    questions = sorted({q for rs in rows.values() for r in rs for q in row_questions(r)})
    if not questions:
        raise OnboardError(f"{data_dir}: no training row has a question to compare")
    sims, nearest = similarity_report(questions, [it.question for it in items], embed)
    sim_of = {q: (s, j) for q, s, j in zip(questions, sims, nearest)}
    arr = np.asarray(sims, dtype=np.float32)
    closest = sorted(range(len(questions)), key=lambda i: -sims[i])[:top]
    report = {
        "data_dir": str(data_dir), "mcq": str(Path(mcq).resolve()), "mcq_items": len(items),
        "threshold": threshold, "embedder": "all-MiniLM-L6-v2 (cosine of question embeddings)",
        "questions": len(questions), "overlapping_questions": int((arr >= threshold).sum()),
        "mcq_items_hit": len({nearest[i] for i in range(len(questions)) if sims[i] >= threshold}),
        "similarity": {"max": round(float(arr.max()), 4), "p99": round(float(np.quantile(arr, 0.99)), 4),
                       "p90": round(float(np.quantile(arr, 0.9)), 4), "median": round(float(np.median(arr)), 4),
                       "histogram": _histogram(arr)},
        "closest": [{"similarity": round(sims[i], 4), "question": questions[i],
                     "mcq_id": items[nearest[i]].id, "mcq_question": items[nearest[i]].question}
                    for i in closest],
        "files": {}, "dropped": drop,
    }
    removed = []
    for name, rs in rows.items():
        # each row's (similarity, MCQ item) of its question closest to an MCQ item
        nearest = [max((sim_of[q] for q in row_questions(r)), default=(0.0, 0)) for r in rs]
        keep = [r for r, (s, _) in zip(rs, nearest) if s < threshold]
        gone = [(r, s, j) for r, (s, j) in zip(rs, nearest) if s >= threshold]
        report["files"][name] = {"rows": len(rs), "overlapping": len(gone), "kept": len(keep) if drop else len(rs)}
        if drop and gone:
            atomic_write_text(data_dir / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))
            removed += [{"file": name, "similarity": round(s, 4), "mcq_id": items[j].id, "row": r}
                        for r, s, j in gone]
    if removed:
        old = data_dir / "overlap-dropped.jsonl"
        prev = old.read_text(encoding="utf-8") if old.is_file() else ""
        atomic_write_text(old, prev + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in removed))
    report["rows_dropped"] = len(removed)
    atomic_write_text(data_dir / "overlap.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def report_lines(report: dict) -> list[str]:
    """A short human summary of check_overlap's report."""
    s = report["similarity"]
    verb = "dropped" if report["dropped"] else "would drop (--dry-run)"
    lines = [f"{report['questions']} distinct training questions vs {report['mcq_items']} MCQ items: "
             f"{report['overlapping_questions']} at cosine >= {report['threshold']} "
             f"(touching {report['mcq_items_hit']} items)",
             f"nearest-MCQ similarity: median {s['median']}, p90 {s['p90']}, p99 {s['p99']}, max {s['max']}",
             "histogram: " + ", ".join(f"[{b['from']}, {b['to']}) {b['questions']}" for b in s["histogram"])]
    for name, f in report["files"].items():
        lines.append(f"{name}: {f['rows']} rows, {f['overlapping']} overlapping, {verb if f['overlapping'] else 'kept all'}")
    return lines
