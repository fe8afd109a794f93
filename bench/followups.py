"""Follow-up retrieval bench: hit@5 of a conversation's second question, searched three ways.

    .venv/bin/python bench/followups.py                                  # smollm2-135m and qwen2.5-coder-1.5b
    .venv/bin/python bench/followups.py --models smollm2-135m --show     # print every rewrite
    .venv/bin/python bench/followups.py --data held_out.jsonl --nitro DIR

Each line of --data (default bench/data/followups_nitro.jsonl) is one conversation:
{"id", "history": [[question, answer], ...], "question": the follow-up, "sources": [files that answer it]}.
The follow-up is searched in the Nitro docs index as
  * bare      - the follow-up alone (what retrieval saw before condensing);
  * concat    - the previous question followed by the follow-up (the naive baseline);
  * rewrite   - assistant.chat.condense.standalone_question with MODEL as the condenser, exactly
                as `onboard ask --history`, the TUI and `onboard serve` build the query
                (questions that read as standalone skip the model call).
A hit means one of the top-k chunks comes from one of the conversation's `sources`.
Target: hit@5 >= 0.85 with rewriting.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT / "bench" / "data" / "followups_nitro.jsonl"
TARGET = 0.85


def _pair(turn) -> tuple[str, str]:
    if isinstance(turn, dict):
        return str(turn.get("question") or turn.get("q") or ""), str(turn.get("answer") or turn.get("a") or "")
    return str(turn[0]), str(turn[1] if len(turn) > 1 else "")


def read_conversations(path: Path) -> list[dict]:
    """Conversations: {"history": [[q, a], ...] or [{"question", "answer"}, ...], "question",
    "sources"}, or {"turns": [{"question", "answer"}, ..., {"question", "sources"}]}."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "turns" in row and "question" not in row:
            *earlier, last = row["turns"]
            row = {**row, "history": earlier, "question": last["question"],
                   "sources": row.get("sources") or last.get("sources") or last.get("source")}
        sources = row.get("sources") or row.get("source")
        row["sources"] = [sources] if isinstance(sources, str) else sources
        row["history"] = [_pair(t) for t in row.get("history") or []]
        if not row["history"] or not row.get("question") or not row["sources"]:
            raise SystemExit(f"{path}:{n}: needs earlier turns, a follow-up question and its sources")
        row.setdefault("id", f"line-{n}")
        rows.append(row)
    return rows


def score(idx, queries: list[str], convs: list[dict], k: int) -> dict:
    from assistant.eval.retrieval import first_hit_rank, score_ranks

    ranks = [first_hit_rank([h.path for h in idx.search(q, k)], c["sources"]) for q, c in zip(queries, convs)]
    hits, mrr = score_ranks(ranks)
    return {**hits, "mrr": mrr, "ranks": ranks}


def _line(label: str, r: dict, extra: str = "") -> None:
    print(f"{label:34} hit@1 {r['hit@1']:.3f}  hit@5 {r['hit@5']:.3f}  MRR {r['mrr']:.3f}  {extra}", flush=True)


def rewrites(model, convs: list[dict]) -> tuple[list[str], list[float]]:
    from assistant.chat.condense import standalone_question

    queries, times = [], []
    for c in convs:
        t = time.perf_counter()
        q = standalone_question(model, c["question"], c["history"])
        if q != c["question"]:
            times.append(time.perf_counter() - t)
        queries.append(q)
    return queries, times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--nitro", type=Path, default=ROOT.parent / "shared" / "corpora" / "nitro" / "docs")
    ap.add_argument("--home", type=Path,
                    default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "onboard-bench",
                    help="ONBOARD_HOME holding the bench's Nitro index (built on first use, then updated)")
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-coder-1.5b", help="condensing models, comma-separated")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--show", action="store_true", help="print each conversation's queries and ranks")
    args = ap.parse_args()

    from assistant.llm.chat_model import load_chat_model
    from assistant.llm.registry import resolve_model
    from assistant.rag.index import index_path, open_retriever
    from assistant.settings import load_settings

    if not args.nitro.is_dir():
        print(f"Nitro docs not found at {args.nitro}; pass --nitro DIR", file=sys.stderr)
        return 2
    convs = read_conversations(args.data)
    settings = load_settings(home=args.home)
    os.environ["ONBOARD_HOME"] = str(args.home)
    index_path(settings, args.nitro, name="nitro-followups", progress=False)
    idx = open_retriever(settings, "nitro-followups", progress=False)
    print(f"bench/followups.py  {len(convs)} conversations from {args.data.name}  k={args.k}  "
          f"retrieval={getattr(settings, 'retrieval', 'vector')}  cpu={os.cpu_count()}", flush=True)
    table = {"bare": score(idx, [c["question"] for c in convs], convs, args.k),
             "concat": score(idx, [f"{c['history'][-1][0]} {c['question']}" for c in convs], convs, args.k)}
    _line("bare follow-up", table["bare"])
    _line("previous question + follow-up", table["concat"])
    shown = {}
    ok = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = load_chat_model(resolve_model(name, settings), n_ctx=4096, n_threads=settings.n_threads, seed=0)
        queries, times = rewrites(model, convs)
        r = table[f"rewrite:{name}"] = score(idx, queries, convs, args.k)
        shown[name] = queries
        ok.append(r["hit@5"] >= TARGET)
        ms = f"{statistics.median(times) * 1000:.0f} ms median" if times else "-"
        _line(f"rewrite, condensed by {name}", r,
              f"({len(times)}/{len(convs)} condensed, {ms})  target hit@5 >= {TARGET}  "
              f"{'PASS' if ok[-1] else 'MISS'}")
    if args.show:
        for i, c in enumerate(convs):
            print(f"\n{c['id']}  {c['question']!r}  sources={c['sources']}")
            print(f"  ranks: bare {table['bare']['ranks'][i]}  concat {table['concat']['ranks'][i]}")
            for name, queries in shown.items():
                print(f"  {name} -> rank {table[f'rewrite:{name}']['ranks'][i]}: {queries[i]!r}")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
