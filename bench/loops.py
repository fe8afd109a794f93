"""Degenerate answers: how many of the 40 public Nitro questions get an answer that loops.

    flock /tmp/onboard-heavy.lock .venv/bin/python bench/loops.py
    .venv/bin/python bench/loops.py --models smollm2-135m --configs before,after

Each packaged model answers every question of the public MCQ set in free form (question text
only, no options), rag mode over the Nitro docs, greedy, through Session.job (what `onboard ask`
does). An answer *loops* when some 8-token run (the model's own tokens) occurs 3 or more times.
Two configurations, same run, same prompts:
  before  repeat/frequency/presence penalties off and the loop detector off (the old behaviour)
  after   the configured defaults (settings repeat_penalty ... loop_ngram, loop_repeats)
Targets (issue 17): after, 0 looping answers for qwen2.5-coder-1.5b, <= 2 of 40 for smollm2-135m.

Long (the 1.5B decodes ~10 tokens/s on 2 cores), so resumable: answers are cached in the
bench home's cache/freeform/answers.jsonl (the same cache `onboard eval --method freeform`
uses, so its rag answers are these "after" answers). The Nitro index is built once in --home
with `onboard corpus get nitro --from DIR`.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.chat.loops import repeated_run  # noqa: E402
from assistant.eval.freeform import default_cache, free_answers  # noqa: E402
from assistant.eval.mcq import read_mcq  # noqa: E402
from assistant.settings import load_settings  # noqa: E402

SHARED = ROOT.parent / "shared"
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
OFF = dict(repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, loop_ngram=0)


def ensure_index(home: Path, docs: Path) -> None:
    from assistant.rag.store import index_exists

    os.environ["ONBOARD_HOME"] = str(home)
    if not index_exists(load_settings(), "nitro"):
        subprocess.run([str(ROOT / ".venv" / "bin" / "onboard"), "corpus", "get", "nitro", "--from", str(docs)],
                       check=True, env={**os.environ, "ONBOARD_HOME": str(home)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--configs", default="before,after")
    ap.add_argument("--mcq", type=Path, default=SHARED / "eval" / "nitro_mcq_public.jsonl")
    ap.add_argument("--docs", type=Path, default=SHARED / "corpora" / "nitro" / "docs")
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "onboard-bench" / "loops", help="ONBOARD_HOME of the bench (index + answer cache)")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=8, help="run length in tokens")
    ap.add_argument("--repeats", type=int, default=3, help="occurrences that make a loop")
    ap.add_argument("--budget-s", type=float, help="start no new answer after this many seconds and exit 3 "
                    "when answers are missing (rerun to resume; lets other jobs take the heavy lock between)")
    args = ap.parse_args()
    deadline = time.monotonic() + args.budget_s if args.budget_s else None

    ensure_index(args.home, args.docs)
    items = read_mcq(args.mcq)
    questions = [(it.id, it.question) for it in items]
    base = load_settings(home=args.home, n_threads=args.threads, max_tokens=args.max_tokens, index="nitro")
    cache = default_cache(base)
    print(f"{len(items)} questions, rag, greedy, max_tokens {args.max_tokens}; loop = some {args.n}-token run "
          f"occurs >= {args.repeats} times; after = repeat_penalty {base.repeat_penalty}, frequency "
          f"{base.frequency_penalty}, presence {base.presence_penalty}, detector {base.loop_ngram}x{base.loop_repeats}")
    print("| model | config | looping answers | stopped by detector | mean answer tokens | decode tok/s |")
    print("|---|---|---|---|---|---|")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
            settings = base.replace(**OFF) if config == "before" else base
            log = (lambda msg: print("  " + msg, file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
            answers = free_answers(settings, name, questions, "rag", "nitro", cache, on_step=log, deadline=deadline)
            if len(answers) < len(questions):
                print(f"| {name} | {config} | incomplete: {len(answers)} of {len(questions)} answered, rerun to resume |")
                return 3
            from assistant.chat.session import open_model

            llm = open_model(settings, name).llm
            tokens = [llm.tokenize(a["answer"].encode(), add_bos=False, special=False) for a in answers.values()]
            looping = [qid for qid, t in zip(answers, tokens) if repeated_run(t, args.n, args.repeats)]
            speeds = [a["timings"].get("tokens_per_s", 0) for a in answers.values() if a["timings"].get("completion_tokens", 0) > 8]
            print(f"| {name} | {config} | {len(looping)} / {len(answers)}"
                  f"{' (' + ', '.join(looping) + ')' if looping else ''} | "
                  f"{sum(bool(a.get('looped')) for a in answers.values())} | "
                  f"{statistics.mean(len(t) for t in tokens):.0f} | "
                  f"{statistics.median(speeds) if speeds else 0:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
