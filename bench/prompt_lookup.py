"""Prompt-lookup decoding bench: decode tokens/s of rag answers with ÷ without prompt lookup.

    .venv/bin/python bench/prompt_lookup.py                      # smollm2-135m and qwen2.5-coder-1.5b
    .venv/bin/python bench/prompt_lookup.py --models smollm2-135m --questions 8 --max-tokens 160

Same model, same retrieved documents, same prompts, greedy: each question is answered without
and with prompt lookup (assistant/llm/prompt_lookup.py), alternating which goes first. Decode
speed is tokens after the first over the time after the first (the prompt is not part of it).
Prints, per model, both speeds, the ratio (target >= 1.5), tokens per decode with lookup, and how
many answers have identical text. Questions: the public Nitro MCQs, asked without their options.

First, per model, the cost curve that bounds any drafting scheme: the time of one llama.cpp decode
of n tokens (logits for each, as verifying n - 1 guesses needs) after a 1,200-token context,
against n one-token decodes. `ceiling` is n x t(1) / t(n), the speed-up if every guess were kept;
real drafts are kept only in part, so the measured ratio stays below it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def _questions(path: Path, n: int) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["question"] for line in f if line.strip()][:n]


def _answer(model, question: str, idx, max_tokens: int, lookup) -> tuple[str, int, float, int]:
    """(text, tokens, decode seconds, decodes) of one greedy rag answer."""
    from assistant.chat.modes import AnswerJob

    from assistant.llm.prompt_lookup import counting_decodes

    model.prompt_lookup = lookup
    with counting_decodes(model) as decodes:
        job = AnswerJob(question, model, mode="rag", retriever=idx, k=4, max_tokens=max_tokens, temperature=0.0)
        job.run()
    stats = model.last
    return job.result.answer, stats.completion_tokens - 1, stats.total_s - stats.ttft_s, decodes[0]


def batch_costs(model, context: list[int], sizes=(1, 2, 3, 4, 6, 8, 12, 16), repeats: int = 5) -> dict[int, float]:
    """Median seconds of one decode of n tokens, logits for all n, after `context` (read once)."""
    import statistics
    import time

    llm = model.llm
    llm.reset()
    llm.eval(context)
    n_past, costs = llm.n_tokens, {}
    guesses = context[:max(sizes)]
    for n in sizes:
        times = []
        for _ in range(repeats):
            llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
            llm._batch.set_batch(batch=guesses[:n], n_past=n_past, logits_all=True)
            start = time.perf_counter()
            llm._ctx.decode(llm._batch)
            times.append(time.perf_counter() - start)
        costs[n] = statistics.median(times)
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    llm.reset()
    return costs


def print_costs(name: str, costs: dict[int, float]) -> None:
    one = costs[1]
    cells = "  ".join(f"n={n}: {t * 1000:.0f} ms ({n * one / t:.2f}x)" for n, t in costs.items() if n > 1)
    print(f"{name:22} one-token decode {one * 1000:.0f} ms; decode of n tokens (ceiling): {cells}", flush=True)


def bench_model(name: str, settings, idx, questions: list[str], max_tokens: int, lookup,
                context_text: str = "") -> float | None:
    from assistant.errors import OnboardError
    from assistant.llm.chat_model import ChatModel
    from assistant.llm.kv_blocks import BlockStore
    from assistant.llm.registry import resolve_model

    try:
        path = resolve_model(name, settings)
    except OnboardError:
        print(f"{name}: not installed - skipped", flush=True)
        return None
    model = ChatModel(path, n_ctx=settings.n_ctx, n_threads=settings.n_threads, seed=0,
                      block_store=BlockStore(memory_mb=4096))
    if context_text:
        context = model.llm.tokenize(context_text.encode(), add_bos=True)[:1200]
        print_costs(name, batch_costs(model, context))
    totals = {"without": [0, 0.0, 0], "with": [0, 0.0, 0]}
    same = 0
    for i, q in enumerate(questions):
        _answer(model, q, idx, 2, None)  # retrieve and read the documents once, untimed
        order = [("without", None), ("with", lookup)]
        texts = {}
        for label, draft in order if i % 2 == 0 else order[::-1]:
            text, tokens, seconds, decodes = _answer(model, q, idx, max_tokens, draft)
            texts[label] = text
            t = totals[label]
            t[0], t[1], t[2] = t[0] + tokens, t[1] + seconds, t[2] + decodes
        same += texts["with"] == texts["without"]
        if texts["with"] != texts["without"]:
            at = next(j for j, (a, b) in enumerate(zip(texts["with"] + "\0", texts["without"] + "\0")) if a != b)
            print(f"  differs at char {at}: {texts['without'][max(0, at - 30):at + 30]!r} vs "
                  f"{texts['with'][max(0, at - 30):at + 30]!r}", flush=True)
    speed = {k: v[0] / v[1] for k, v in totals.items()}
    ratio = speed["with"] / speed["without"]
    per_decode = totals["with"][0] / max(1, totals["with"][2])
    print(f"{name:22} {speed['with']:7.1f} / {speed['without']:7.1f} tok/s = {ratio:5.2f}x  "
          f"({per_decode:.2f} tokens per decode with lookup; identical text {same}/{len(questions)}; "
          f"{totals['with'][0]} tokens)  target >= 1.5  {'PASS' if ratio >= 1.5 else 'MISS'}", flush=True)
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-coder-1.5b")
    ap.add_argument("--nitro", type=Path, default=SHARED / "corpora" / "nitro" / "docs")
    ap.add_argument("--mcq", type=Path, default=SHARED / "eval" / "nitro_mcq_public.jsonl")
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--num-pred", type=int, default=8, help="tokens drafted at most")
    ap.add_argument("--min-ngram", type=int, default=2, help="shortest match that drafts")
    args = ap.parse_args()
    if not args.nitro.is_dir() or not args.mcq.is_file():
        print(f"needs {args.nitro} and {args.mcq}; pass --nitro DIR --mcq FILE", file=sys.stderr)
        return 2

    from assistant.llm.prompt_lookup import PromptLookup
    from assistant.rag.index import index_path, open_retriever
    from assistant.settings import load_settings

    questions = _questions(args.mcq, args.questions)
    print(f"bench/prompt_lookup.py  cpu={os.cpu_count()}  {len(questions)} rag questions, greedy, "
          f"max_tokens {args.max_tokens}; drafts of up to {args.num_pred} tokens after a match of "
          f">= {args.min_ngram}; decode tok/s with / without prompt lookup", flush=True)
    lookup = PromptLookup(max_ngram=max(3, args.min_ngram), min_ngram=args.min_ngram, num_pred=args.num_pred)
    with tempfile.TemporaryDirectory(prefix="onboard-bench-") as tmp:
        os.environ["ONBOARD_HOME"] = tmp
        settings = load_settings(home=Path(tmp))
        index_path(settings, args.nitro, name="nitro", progress=False)
        idx = open_retriever(settings, "nitro")
        context_text = "\n\n".join(p.read_text(encoding="utf-8", errors="replace")
                                     for p in sorted(args.nitro.rglob("*.md"))[:20])
        for name in args.models.split(","):
            bench_model(name.strip(), settings, idx, questions, args.max_tokens, lookup, context_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
