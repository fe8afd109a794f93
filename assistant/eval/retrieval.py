"""Retrieval evaluation: hit@1/3/5 and MRR of a docs index on an MCQ file with `sources`.

    onboard eval-retrieval --mcq ../shared/eval/nitro_mcq_public.jsonl --index nitro --modes rag,hybrid,hyde \
        --retrieval vector,bm25,fused

A hit means one of the top-k retrieved chunks comes from one of the question's `sources` files
(paths relative to the corpus root). Modes build the retrieval query the way answering does:
  * rag    - the question alone;
  * hybrid - question + a short draft answer by the chat model (settings.model, e.g. a tuned one),
             exactly the query `onboard ask --mode hybrid` uses;
  * hyde   - question + a hypothetical docs passage written by the untuned base model
             (HyDE, Gao et al. 2022): the baseline a tuned drafter must beat.
Each query is searched with each retrieval ranking (rag.lexical.RETRIEVAL_MODES: vector, bm25,
fused); a result row is one (mode, retrieval) pair.
MRR is over the top `k_max` (5) results: 1/rank of the first hit, 0 when none.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from assistant.errors import OnboardError
from assistant.eval.mcq import MCQItem

RETRIEVAL_MODES = ("rag", "hybrid", "hyde")
HYDE_MODEL = "smollm2-135m"
SYSTEM_HYDE = ("You write technical documentation. Write a short passage (three or four sentences) "
               "from the product's documentation that answers the question.")
KS = (1, 3, 5)


@dataclass
class ModeResult:
    mode: str
    retrieval: str = "vector"
    n: int = 0
    hits: dict = field(default_factory=dict)  # {"hit@1": float, ...}
    mrr: float = 0.0
    query_ms_p50: float = 0.0
    draft_ms_mean: float = 0.0
    ranks: list = field(default_factory=list)  # per question: {"id", "rank" (0 = miss), "top"}

    def to_dict(self, with_ranks: bool = True) -> dict:
        d = asdict(self)
        if not with_ranks:
            d.pop("ranks")
        return d


def first_hit_rank(paths: Sequence[str], sources: Sequence[str]) -> int:
    """1-based rank of the first retrieved path that is one of `sources`; 0 when none is."""
    wanted = {s.strip("/") for s in sources}
    for i, p in enumerate(paths, 1):
        if p.strip("/") in wanted:
            return i
    return 0


def score_ranks(ranks: Sequence[int]) -> tuple[dict, float]:
    n = max(1, len(ranks))
    hits = {f"hit@{k}": round(sum(1 for r in ranks if 0 < r <= k) / n, 4) for k in KS}
    mrr = round(sum(1.0 / r for r in ranks if r > 0) / n, 4)
    return hits, mrr


def query_builder(mode: str, model=None) -> Callable[[str], str]:
    """question -> retrieval query for one mode: rag and hybrid exactly as answering builds them
    (chat.modes.retrieval_query), hyde as question + a hypothetical docs passage."""
    from assistant.chat.modes import check_mode, draft_answer, hybrid_query, retrieval_query

    check_mode(mode, RETRIEVAL_MODES)
    if mode == "rag":
        return lambda question: question
    if model is None:
        raise OnboardError(f"mode {mode} needs a model to draft with")
    if mode == "hybrid":
        return lambda question: retrieval_query(model, question, "hybrid")[0]
    return lambda question: hybrid_query(question, draft_answer(model, question, system=SYSTEM_HYDE, max_tokens=128))


def evaluate_retrieval(retriever, items: Sequence[MCQItem], modes: Sequence[str] = ("rag",),
                       models: dict | None = None, k_max: int = 5, progress: bool = False,
                       retrievals: Sequence[str] = ("vector",)) -> list[ModeResult]:
    """Score each mode x retrieval ranking on the items that name sources; `models` maps
    hybrid/hyde to the model that drafts (each query is drafted once for all rankings)."""
    items = [i for i in items if i.sources]
    if not items:
        raise OnboardError("no question names its sources (a \"sources\" list of doc paths), so retrieval "
                           "cannot be scored")
    builders = {mode: query_builder(mode, (models or {}).get(mode)) for mode in modes}
    from rich.progress import Progress

    results = []
    for mode in modes:
        rows = {r: ModeResult(mode=mode, retrieval=r, n=len(items)) for r in retrievals}
        query_times: dict = {r: [] for r in retrievals}
        draft_times = []
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"retrieval eval ({mode})", total=len(items))
            for item in items:
                t = time.perf_counter()
                query = builders[mode](item.question)
                if mode != "rag":
                    draft_times.append(time.perf_counter() - t)
                for r, res in rows.items():
                    t = time.perf_counter()
                    hits = retriever.search(query, k_max, mode=r)
                    query_times[r].append(time.perf_counter() - t)
                    rank = first_hit_rank([h.path for h in hits], item.sources)
                    res.ranks.append({"id": item.id, "rank": rank, "top": [h.ref for h in hits[:3]]})
                bar.advance(task)
        for r, res in rows.items():
            res.hits, res.mrr = score_ranks([row["rank"] for row in res.ranks])
            times = sorted(query_times[r])
            res.query_ms_p50 = round(times[len(times) // 2] * 1000, 2)
            res.draft_ms_mean = round(sum(draft_times) / len(draft_times) * 1000, 1) if draft_times else 0.0
            results.append(res)
    return results


def write_chart(results: Sequence[ModeResult], path: Path, title: str = "Retrieval quality") -> Path:
    """Grouped bars: hit@1/3/5 and MRR per mode, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assistant.files import atomic_write_bytes

    metrics = [f"hit@{k}" for k in KS] + ["MRR"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        values = [r.hits[m] for m in metrics[:-1]] + [r.mrr]
        xs = [j + i * width for j in range(len(metrics))]
        bars = ax.bar(xs, values, width, label=f"{r.mode}, {r.retrieval}")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(metrics))], metrics)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of questions")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
