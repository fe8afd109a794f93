"""Teacher throughput and JSON reliability for `onboard synth`, grammar vs no grammar, one run.

    .venv/bin/python bench/synth.py [--corpus DIR] [--chunks 4] [--questions 2] [--threads 2]
                                    [--teacher NAME]

Teacher: qwen2.5-coder-1.5b when installed (the intended teacher), else smollm2-135m; the
output says which. For the same chunks, prompts and seeds it asks for Q&A pairs twice: with
the JSON schema as a llama.cpp grammar (what synth does) and without it (baseline: same
prompt, free text). No retries, so every reply counts. Prints pairs/minute (valid pairs per
wall minute of teacher time, with the grammar) and the share of replies that parse first time
(json.loads of the whole reply), and the ratio grammar / baseline.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pick_teacher(settings, wanted: str | None) -> str:
    from assistant.errors import OnboardError
    from assistant.llm.registry import resolve_model

    if wanted:
        return wanted
    try:
        resolve_model("qwen2.5-coder-1.5b", settings)
        return "qwen2.5-coder-1.5b"
    except OnboardError:
        return "smollm2-135m"


def run(teacher, chunks, questions: int, seed: int) -> dict:
    from train.synth import KINDS, QA_MAX_TOKENS, QA_SCHEMA, check_qa, qa_messages
    from train.teacher import call_seed

    pairs, start = 0, time.perf_counter()
    for chunk in chunks:
        teacher.reset()
        asked: list[str] = []
        for j in range(questions):
            got = teacher.ask_json(qa_messages(chunk, KINDS[j % len(KINDS)], asked), QA_SCHEMA, check_qa,
                                   max_tokens=QA_MAX_TOKENS, temperature=0.7,
                                   seed=call_seed(seed, chunk.id, "qa", j))
            if got:
                asked.append(got["question"])
                pairs += 1
    seconds = time.perf_counter() - start
    s = teacher.stats
    return {"asks": s.json_requests, "parsed_first_time": s.json_first_parsed,
            "parse_rate": round(s.parse_rate, 4), "valid_pairs": pairs, "seconds": round(seconds, 1),
            "pairs_per_min": round(60 * pairs / seconds, 2) if seconds else 0.0,
            "completion_tokens": s.completion_tokens,
            "tokens_per_s": round(s.completion_tokens / seconds, 1) if seconds else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_corpus = ROOT.parent / "shared" / "corpora" / "nitro" / "docs"
    ap.add_argument("--corpus", default=str(default_corpus if default_corpus.is_dir() else ROOT / "docs"))
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--questions", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--teacher", help="registry name or .gguf (default: qwen2.5-coder-1.5b if installed)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from assistant.rag.chunking import chunk_documents
    from assistant.rag.ingest import load_documents
    from assistant.settings import load_settings
    from train.synth import select_chunks
    from train.teacher import open_teacher

    settings = load_settings(n_threads=args.threads)
    name = pick_teacher(settings, args.teacher)
    docs, _ = load_documents(Path(args.corpus))
    chunks = select_chunks(chunk_documents(docs, settings.chunk_tokens, settings.chunk_overlap),
                           args.chunks, args.seed)
    print(f"teacher: {name} · {args.threads} threads · {len(chunks)} chunks × {args.questions} "
          f"questions · corpus {args.corpus}", flush=True)
    results = {}
    for label, grammar in (("grammar", True), ("no_grammar", False)):
        teacher = open_teacher(name, settings, retries=0, use_grammar=grammar)
        results[label] = run(teacher, chunks, args.questions, args.seed)
        r = results[label]
        print(f"  {label:10s} parsed first time {r['parsed_first_time']}/{r['asks']} "
              f"({100 * r['parse_rate']:.0f}%) · valid pairs {r['valid_pairs']} · "
              f"{r['pairs_per_min']:.1f} pairs/min · {r['tokens_per_s']:.1f} tok/s · {r['seconds']:.0f} s",
              flush=True)
    g, b = results["grammar"], results["no_grammar"]
    ratio = g["parse_rate"] / b["parse_rate"] if b["parse_rate"] else None
    print(f"pairs/minute with grammar ({name}, {args.threads} threads): {g['pairs_per_min']:.1f}")
    print(f"first-time parse rate: grammar {100 * g['parse_rate']:.0f}% vs no grammar "
          f"{100 * b['parse_rate']:.0f}% -> ratio "
          + (f"{ratio:.2f}x" if ratio is not None else "inf (baseline parsed nothing)"))
    print(json.dumps({"teacher": name, "threads": args.threads, **results,
                      "parse_rate_ratio": round(ratio, 3) if ratio is not None else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
