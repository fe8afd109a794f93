"""Tokens/s of `onboard ask` divided by raw llama_cpp create_chat_completion - one run, same box.

    .venv/bin/python bench/ask_overhead.py [--model smollm2-135m] [--rounds 5] [--max-tokens 128]

Both sides use the same GGUF, messages (onboard's plain-mode system prompt + the question),
seed, temperature 0 and thread count, and the same metric (decode tokens/s: tokens after the
first over the time after the first). `onboard ask --json` runs as a real subprocess (the CLI
path users run); the baseline streams from llama_cpp.Llama directly. Rounds alternate so
thermal/noise drift hits both. Target: ratio >= 0.97.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.chat.prompts import SYSTEM_PLAIN  # noqa: E402
from assistant.llm.registry import resolve_model  # noqa: E402
from assistant.settings import load_settings  # noqa: E402

QUESTION = "Explain in a few sentences what a hash table is and why lookups are fast."


def raw_tokens_per_s(llm, max_tokens: int, seed: int) -> float:
    messages = [{"role": "system", "content": SYSTEM_PLAIN}, {"role": "user", "content": QUESTION}]
    start = time.perf_counter()
    first, n = None, 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0,
                                            stream=True, seed=seed):
        if chunk["choices"][0]["delta"].get("content"):
            n += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    return (n - 1) / (end - first) if n > 1 else 0.0


def onboard_tokens_per_s(model: str, max_tokens: int, seed: int, threads: int) -> float:
    cmd = [sys.executable, "-m", "assistant.cli", "ask", "--json", "--model", model,
           "--max-tokens", str(max_tokens), "--temperature", "0", "--seed", str(seed),
           "--threads", str(threads), QUESTION]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    return json.loads(out)["tokens_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import llama_cpp

    path = resolve_model(args.model, load_settings())
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=4096, n_threads=args.threads, seed=args.seed, verbose=False)
    raw, ours = [], []
    for r in range(args.rounds):
        raw.append(raw_tokens_per_s(llm, args.max_tokens, args.seed))
        ours.append(onboard_tokens_per_s(args.model, args.max_tokens, args.seed, args.threads))
        print(f"round {r + 1}: raw {raw[-1]:.1f} tok/s   onboard ask {ours[-1]:.1f} tok/s")
    raw_m, ours_m = statistics.median(raw), statistics.median(ours)
    print(f"\nmodel {args.model} ({path.name}), threads {args.threads}, {args.max_tokens} tokens, {args.rounds} rounds")
    print(f"raw llama_cpp: {raw_m:.1f} tok/s (median)   onboard ask: {ours_m:.1f} tok/s (median)")
    print(f"ratio onboard/raw = {ours_m / raw_m:.3f}  (target >= 0.97)")


if __name__ == "__main__":
    main()
