"""Load on `onboard serve` with clients that hang up mid-answer: does anyone wait behind them, and
does memory stay bounded? Loopback only; one process (server thread + client threads).

    .venv/bin/python bench/serve_load.py [--model smollm2-135m] [--clients 20] [--rounds 3]

Each round starts `--clients` clients at once; every third one asks for a long essay
(max_tokens 1500, ~15 s of SmolLM2-135M if nobody stopped it) and hangs up: streaming ones
after a few chunks, non-streaming ones after 1-3 s (queued or answering, whichever they are
then). The others ask short questions (max_tokens --max-tokens), streaming and not.
Baseline, measured first in the same run: one short answer alone (`answer_s`).
Printed, from the server's own request records (quantize.serve_generation.RequestRecord):
- stop lag: how long the model stayed busy after a client hung up; ratio to answer_s (target < 1:
  no request waits more than one answer behind a dropped client);
- idle share: the round's wall time not spent on answers (the model sitting idle or finishing
  abandoned answers), and what the abandoned essays would have cost had they run to the end;
- client latencies of the short requests; RSS after warm-up, after each round, and the peak.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from assistant.llm.chat_model import load_chat_model  # noqa: E402
from assistant.llm.registry import resolve_model  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from quantize.serve import ServerState, create_app, run_in_thread  # noqa: E402

ESSAY = [{"role": "user", "content": "Write a very long, detailed essay about the history of computing, "
                                     "with many sections."}]
QUESTIONS = ["What is a hash table?", "Name three sorting algorithms.", "What does a compiler do?",
             "Why are caches fast?", "What is a mutex for?"]


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def short(url: str, i: int, max_tokens: int, stream: bool) -> float:
    body = {"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], "max_tokens": max_tokens,
            "temperature": 0, "stream": stream}
    t = time.monotonic()
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        text = r.read().decode()
        assert r.status_code == 200, text
    return time.monotonic() - t


def drop(url: str, i: int, rng: random.Random, stream: bool) -> None:
    body = {"messages": ESSAY, "max_tokens": 1500, "temperature": 0, "stream": stream}
    if stream:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
            seen = 0
            for line in r.iter_lines():
                seen += line.startswith("data: {")
                if seen > 5:
                    return  # hang up mid-answer
        raise AssertionError("the essay ended before the client hung up")
    try:
        httpx.post(url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(600, read=rng.uniform(1, 3)))
    except httpx.ReadTimeout:
        return
    raise AssertionError("the essay ended before the client hung up")


def one_round(url: str, state: ServerState, clients: int, max_tokens: int, rng: random.Random) -> dict:
    first = len(state.recent)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        jobs = [pool.submit(drop, url, i, rng, i % 2 == 0) if i % 3 == 0 else
                pool.submit(short, url, i, max_tokens, i % 2 == 1) for i in range(clients)]
        results = [j.result() for j in jobs]
    while state.lock.locked() or state.waiting:  # abandoned generations wind down
        time.sleep(0.01)
    wall = time.monotonic() - t0
    records = list(state.recent)[first:]
    busy = sum(r.ended_at - r.started_at for r in records if r.started_at is not None)
    lags = [r.stop_lag_s for r in records if r.stop_lag_s is not None]
    return {"wall": wall, "latencies": [x for x in results if x is not None], "records": records, "busy": busy,
            "lags": lags, "rss": rss_mb()[0],
            "dropped_running": sum(r.outcome == "cancelled" for r in records),
            "dropped_queued": sum(r.outcome == "gave up waiting" for r in records),
            "essay_tokens": sum(r.completion_tokens for r in records if r.outcome == "cancelled")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="onboard-serve-load-"))
    settings = Settings(home=home, n_threads=args.threads, max_tokens=args.max_tokens)
    model = load_chat_model(resolve_model(args.model, settings), n_ctx=4096, n_threads=args.threads, seed=0)
    # max_waiting above the client count: this measures drops, not the 503 back-pressure
    state = ServerState(model=model, model_id=args.model, settings=settings, max_waiting=args.clients + 4)
    server, url = run_in_thread(create_app(state))
    try:
        answer_s = statistics.median(short(url, i, args.max_tokens, False) for i in range(5))
        t = time.monotonic()
        essay = httpx.post(url + "/v1/chat/completions", timeout=600,
                           json={"messages": ESSAY, "max_tokens": 1500, "temperature": 0}).json()
        essay_s, essay_tokens = time.monotonic() - t, essay["usage"]["completion_tokens"]
        rss0 = rss_mb()[0]
        print(f"model {args.model}, {args.clients} clients/round ({len(range(0, args.clients, 3))} hang up), "
              f"{args.rounds} rounds, threads {args.threads}")
        print(f"baseline: one {args.max_tokens}-token answer alone {answer_s:.2f} s; a whole essay "
              f"{essay_s:.1f} s ({essay_tokens} tokens); RSS after warm-up {rss0:.0f} MB")
        rng = random.Random(0)
        for n in range(1, args.rounds + 1):
            r = one_round(url, state, args.clients, args.max_tokens, rng)
            lat = sorted(r["latencies"])
            max_lag = max(r["lags"], default=0.0)
            idle = max(0.0, r["wall"] - r["busy"])
            saved = (r["dropped_running"] + r["dropped_queued"]) * essay_s
            print(f"round {n}: wall {r['wall']:.1f} s, model busy {r['busy']:.1f} s (idle {idle:.1f} s); "
                  f"{r['dropped_running']} hung up answering ({r['essay_tokens']} essay tokens in all), "
                  f"{r['dropped_queued']} while queued; stop lag max {max_lag:.3f} s = "
                  f"{max_lag / answer_s:.2f} x answer_s; short requests p50 {statistics.median(lat):.1f} s, "
                  f"max {lat[-1]:.1f} s; uncancelled essays would have added ~{saved:.0f} s; "
                  f"RSS {r['rss']:.0f} MB ({r['rss'] - rss0:+.0f})")
        rss, peak = rss_mb()
        print(f"memory: RSS {rss0:.0f} -> {rss:.0f} MB ({rss - rss0:+.0f} MB) over {args.rounds} rounds, "
              f"peak {peak:.0f} MB; request records kept {len(state.recent)} (bounded at {state.recent.maxlen})")
        print(f"health: {httpx.get(url + '/health', timeout=10).json()}")
    finally:
        server.should_exit = True


if __name__ == "__main__":
    main()
