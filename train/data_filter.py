"""Quality filters for synthesized or imported Q&A pairs, with a count of what was dropped and why.

    kept, dropped = filter_pairs(pairs, sources={chunk_id: text}, config=FilterConfig())

Checks, in order (a pair is dropped for the first reason that applies):
  * length      - question or answer too short / too long (characters);
  * exact dup   - same question after case/space/punctuation normalisation;
  * grounding   - too few of the answer's content words appear in its source chunk
                  (only when the pair has a source); catches answers the teacher made up;
  * near dup    - question embedding cosine >= threshold with an already kept question
                  (all-MiniLM-L6-v2, the index's embedder); the first one wins.
Pairs are plain dicts with at least "question" and "answer" (and "chunk_id" for grounding).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass

REASONS = ("question_length", "answer_length", "exact_duplicate", "low_grounding", "near_duplicate")

# Words that carry no fact: ignored when measuring how much of an answer its chunk supports.
STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with from as is are was were be been being
this that these those it its it's they them their there here you your we our i me my he she his her
do does did done doing can could should would will shall may might must not no yes so such than
too very also just only any all each every some more most other into about over under after before
what which who whom whose when where why how up down out off again further once both few nor own
same s t don't doesn't isn't aren't use used using uses via per e g i e etc like one two has have
had having get gets got make makes made need needs allows allow provides provide
""".split())

_WORD = re.compile(r"[a-z0-9][a-z0-9_.\-/]*[a-z0-9]|[a-z0-9]")


@dataclass
class FilterConfig:
    min_question_chars: int = 12
    max_question_chars: int = 400
    min_answer_chars: int = 8
    max_answer_chars: int = 2000
    min_grounding: float = 0.5   # share of answer content words found in the source chunk
    near_duplicate: float = 0.92  # question cosine similarity at or above which it is a repeat

    def to_dict(self) -> dict:
        return asdict(self)


def _stem(word: str) -> str:
    # Light plural/verb folding so "models"/"model", "loads"/"load" match; no stemmer dependency.
    for suffix in ("ing", "es", "ed", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def grounding(answer: str, source: str) -> float:
    """Share of the answer's content words that occur in `source` (0.0 when it has none)."""
    words = content_words(answer)
    if not words:
        return 0.0
    vocab = set(content_words(source))
    return sum(w in vocab for w in words) / len(words)


def token_f1(a: str, b: str) -> float:
    """SQuAD-style word-overlap F1 of content words: how much two answers say the same thing."""
    wa, wb = Counter(content_words(a)), Counter(content_words(b))
    common = sum((wa & wb).values())
    if not common:
        return 0.0
    precision, recall = common / sum(wa.values()), common / sum(wb.values())
    return 2 * precision * recall / (precision + recall)


def normalize_question(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def embed(texts: list[str]):
    """Unit-normalised embeddings with the index's embedder (loaded once per process)."""
    from assistant.rag.embedders import embed_texts

    return embed_texts(list(texts))


def near_duplicate_of(vectors, threshold: float) -> list[int | None]:
    """For each row: index of an earlier *kept* row it repeats (cosine >= threshold), else None.
    Greedy in order, so of a group of repeats the first is kept."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    out: list[int | None] = []
    kept: list[int] = []
    for i in range(len(vectors)):
        if kept:
            sims = vectors[kept] @ vectors[i]
            j = int(sims.argmax())
            if sims[j] >= threshold:
                out.append(kept[j])
                continue
        kept.append(i)
        out.append(None)
    return out


def filter_pairs(pairs: list[dict], sources: dict[str, str] | None = None,
                 config: FilterConfig | None = None, vectors=None) -> tuple[list[dict], Counter]:
    """Keep good pairs (order preserved). `vectors`: precomputed question embeddings (optional).
    Each kept pair gains a "grounding" score when it has a source."""
    cfg = config or FilterConfig()
    sources = sources or {}
    dropped: Counter = Counter()
    survivors: list[int] = []
    seen: set[str] = set()
    for i, p in enumerate(pairs):
        q, a = (p.get("question") or "").strip(), (p.get("answer") or "").strip()
        if not cfg.min_question_chars <= len(q) <= cfg.max_question_chars:
            dropped["question_length"] += 1
            continue
        if not cfg.min_answer_chars <= len(a) <= cfg.max_answer_chars:
            dropped["answer_length"] += 1
            continue
        key = normalize_question(q)
        if key in seen:
            dropped["exact_duplicate"] += 1
            continue
        source = sources.get(p.get("chunk_id") or "")
        if source is not None:
            score = grounding(a, source)
            if score < cfg.min_grounding:
                dropped["low_grounding"] += 1
                continue
            p["grounding"] = round(score, 3)
        seen.add(key)
        survivors.append(i)
    if not survivors:
        return [], dropped
    if vectors is None:
        vecs = embed([pairs[i]["question"] for i in survivors])
    else:
        import numpy as np

        vecs = np.asarray(vectors)[survivors]
    kept = []
    for i, dup in zip(survivors, near_duplicate_of(vecs, cfg.near_duplicate)):
        if dup is None:
            kept.append(pairs[i])
        else:
            dropped["near_duplicate"] += 1
    return kept, dropped


def filter_texts(texts: list[str], source: str, min_chars: int = 80, min_grounding: float = 0.6) -> tuple[list[str], Counter]:
    """Rephrasings of one chunk: drop short ones, exact repeats and ones that drift from it."""
    kept, dropped, seen = [], Counter(), set()
    for t in texts:
        t = (t or "").strip()
        if len(t) < min_chars:
            dropped["rephrase_length"] += 1
        elif normalize_question(t) in seen:
            dropped["rephrase_duplicate"] += 1
        elif grounding(t, source) < min_grounding:
            dropped["rephrase_grounding"] += 1
        else:
            seen.add(normalize_question(t))
            kept.append(t)
    return kept, dropped


def summary_table(title: str, total: int, kept: int, dropped: Counter):
    """A rich Table: kept and each drop reason with counts and shares."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")

    def pct(n: int) -> str:
        return f"{100 * n / total:.1f}%" if total else "-"

    table.add_row("[green]kept[/green]", str(kept), pct(kept))
    for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1]):
        table.add_row(f"dropped: {reason}", str(n), pct(n))
    table.add_row("[bold]total[/bold]", str(total), "100%" if total else "-")
    return table
