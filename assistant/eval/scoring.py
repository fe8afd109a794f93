"""Multiple-choice evaluation: letter log-probabilities, position-bias control, retrieval hit@k.

    onboard eval --mcq ../shared/eval/nitro_mcq_public.jsonl --model smollm2-135m \\
        --modes plain,rag,hybrid --runs 10 --index nitro

How an item is scored: the question and its lettered options are rendered with the model's own
chat template (retrieved documents first in rag/hybrid), and the model's next-token
log-probability of each option letter ("A" or " A", ...) is read straight from llama.cpp; no
free-text parsing, so a model that would ramble still gets a score. Small models prefer some
letters whatever the content, so every item is also scored over all cyclic rotations of its
options (each option sits once under every letter; the per-option log-probs are averaged) and
with a letter prior estimated on the run (batch calibration). Each run shuffles the option order
with its own seed; we report mean ± std over runs. Generation-and-parse is a secondary method.

Context is budgeted in tokens: the question with all options always fits whole or the item is
reported as too long (never cut); retrieved chunks fill what is left and any trimming is counted.
Items and reading MCQ files live in mcq.py; the resumable run in run.py; writing results in
report.py.
"""
from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from assistant.chat.modes import retrieval_query
from assistant.chat.prompts import SYSTEM_RAG, document_blocks, rag_user_message
from assistant.chat.whole_files import fit_context
from assistant.errors import OnboardError
from assistant.eval.mcq import LETTERS, MCQItem
from assistant.llm.kv_blocks import Segment
from assistant.rag.hits import Hit

METHODS = ("single", "calibrated", "cyclic")  # + "generate" when asked for
MCQ_RULE = "Reply with the letter of the correct option only (for example: B)."
SYSTEM_MCQ = "You are onboard, a concise technical assistant. " + MCQ_RULE
SYSTEM_MCQ_RAG = SYSTEM_RAG + " " + MCQ_RULE
CTX_MARGIN = 16  # template tokens the rough count can miss


# --- orders ------------------------------------------------------------------------------
def shuffled_order(item: MCQItem, seed: int, run: int) -> tuple[int, ...]:
    """Option order for one run: a permutation of option indices, fixed by (seed, run, item)."""
    order = list(range(len(item.options)))
    random.Random(f"{seed}/{run}/{item.id}").shuffle(order)
    return tuple(order)


def rotations(order: Sequence[int]) -> list[tuple[int, ...]]:
    return [tuple(order[r:]) + tuple(order[:r]) for r in range(len(order))]


def format_question(question: str, options: Sequence[str]) -> str:
    return question.strip() + "\n\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


# --- scoring -----------------------------------------------------------------------------
class LetterScorer:
    """Next-token log-probabilities of option letters through llama.cpp, reusing the KV cache
    for the shared prompt prefix (system, documents, question) across option orders, and the
    documents' KV blocks across questions when the model has document KV reuse on."""

    def __init__(self, model):
        self.model, llm = model, model.llm
        self.n_vocab = llm.n_vocab()
        self.letter_ids = []
        for letter in LETTERS:
            ids = {llm.tokenize(v.encode(), add_bos=False, special=False)[0] for v in (letter, " " + letter)}
            self.letter_ids.append(sorted(ids))

    def prompt(self, messages: list[dict], blocks: Sequence[str] = ()) -> tuple[list[Segment], list[int]]:
        """(segments, canonical prefix) as kv_blocks.BlockPrefill takes them."""
        llm = self.model.llm
        if self.model.formatter is None:  # base model without a template: plain transcript
            text = "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"
            return [Segment(llm.tokenize(text.encode(), add_bos=True, special=False))], []
        return self.model.prompt_segments(messages, blocks if self.model.blocks.enabled else ())

    def tokens(self, messages: list[dict]) -> list[int]:
        return [t for s in self.prompt(messages)[0] for t in s.tokens]

    def letter_logprobs(self, prompt: tuple[list[Segment], list[int]], n_options: int
                        ) -> tuple[np.ndarray, float]:
        """(log-probs over the first n letters, renormalised; total probability on letters)."""
        import llama_cpp

        llm = self.model.llm
        with self.model.lock:
            self.model.blocks.prefill(*prompt)
            ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        top = logits.max()
        lse = top + math.log(np.exp(logits - top).sum())
        lp = np.array([np.logaddexp.reduce(logits[ids]) - lse for ids in self.letter_ids[:n_options]])
        mass = float(np.exp(lp).sum())
        return lp - np.logaddexp.reduce(lp), mass


def parse_letter(text: str, n_options: int) -> int | None:
    allowed = LETTERS[:n_options]
    m = re.search(rf"(?<![A-Za-z])([{allowed}])(?![A-Za-z])", text.strip())
    return allowed.index(m.group(1)) if m else None


# --- one model x one mode ----------------------------------------------------------------
@dataclass
class Context:
    """What an item's prompt holds in one mode: retrieved hits, what fit, the hybrid draft."""

    retrieved: list[Hit] = field(default_factory=list)
    kept: list[Hit] = field(default_factory=list)
    draft: str | None = None
    too_long: bool = False
    truncated: bool = False  # some retrieved text was dropped or trimmed to fit
    question_tokens: int = 0


def _messages(item: MCQItem, order: Sequence[int], mode: str, hits: Sequence[Hit]) -> list[dict]:
    block = format_question(item.question, [item.options[i] for i in order])
    if mode == "plain":
        return [{"role": "system", "content": SYSTEM_MCQ}, {"role": "user", "content": block}]
    return [{"role": "system", "content": SYSTEM_MCQ_RAG}, {"role": "user", "content": rag_user_message(block, hits)}]


def prepare_context(scorer: LetterScorer, item: MCQItem, mode: str, retriever, k: int,
                    retrieval_cache: dict, whole_files_tokens: int = 0) -> Context:
    model = scorer.model
    ctx = Context()
    base = len(scorer.tokens(_messages(item, range(len(item.options)), mode, [])))
    ctx.question_tokens = base
    room = model.n_ctx - base - CTX_MARGIN
    if room < 0:
        ctx.too_long = True
        return ctx
    if mode == "plain":
        return ctx
    query, ctx.draft = retrieval_query(model, item.question, mode)  # exactly what `onboard ask` searches
    if query not in retrieval_cache:
        retrieval_cache[query] = retriever.search(query, k)
    ctx.retrieved = list(retrieval_cache[query])
    ctx.kept, unit = fit_context(model, ctx.retrieved, room, retriever, whole_files_tokens)
    ctx.truncated = unit == "chunks" and (len(ctx.kept) < len(ctx.retrieved) or any(
        a.text != b.text for a, b in zip(ctx.kept, ctx.retrieved)))
    return ctx


def score_item(scorer: LetterScorer, item: MCQItem, mode: str, ctx: Context, order: tuple[int, ...],
               memo: dict) -> dict:
    """Letter log-probs for `order` and all its rotations -> single-order and cyclic results."""
    n = len(item.options)
    per_option = np.zeros(n)
    single_lp, mass = None, 0.0
    for rot in rotations(order):
        if rot not in memo:
            memo[rot] = scorer.letter_logprobs(
                scorer.prompt(_messages(item, rot, mode, ctx.kept), document_blocks(ctx.kept)), n)
        lp, m = memo[rot]
        per_option[list(rot)] += lp  # lp[j] belongs to option rot[j]
        if single_lp is None:
            single_lp, mass = lp, m
    shown_answer = order.index(item.answer)
    return {
        "order": "".join(LETTERS[i] for i in order), "answer_shown": LETTERS[shown_answer],
        "single_lp": [round(float(x), 4) for x in single_lp], "letter_mass": round(mass, 4),
        "pred_single": LETTERS[int(np.argmax(single_lp))],
        "correct_single": int(np.argmax(single_lp)) == shown_answer,
        "pred_cyclic": LETTERS[int(np.argmax(per_option))],  # original letter
        "correct_cyclic": int(np.argmax(per_option)) == item.answer,
    }


def calibrate(rows: list[dict]) -> None:
    """Batch calibration: subtract the run's mean letter prior from each single-order score."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "single_lp" in r:
            groups.setdefault((r["model"], r["mode"], r["run"], len(r["single_lp"])), []).append(r)
    for group in groups.values():
        lps = np.array([r["single_lp"] for r in group])
        prior = np.log(np.exp(lps).mean(axis=0))
        for r, lp in zip(group, lps):
            pick = int(np.argmax(lp - prior))
            r["pred_calibrated"] = LETTERS[pick]
            r["correct_calibrated"] = LETTERS[pick] == r["answer_shown"]


def generate_answer(model, item: MCQItem, mode: str, ctx: Context, order: tuple[int, ...], seed: int) -> dict:
    text = model.chat(_messages(item, order, mode, ctx.kept), max_tokens=8, temperature=0.0, seed=seed)
    pick = parse_letter(text, len(item.options))
    return {"generated": text.strip()[:40], "pred_generate": LETTERS[pick] if pick is not None else None,
            "correct_generate": pick is not None and order[pick] == item.answer}


def retrieval_fields(ctx: Context, item: MCQItem) -> dict:
    """Rank of the first retrieved chunk from one of the item's sources (0: none), and whether
    such a chunk survived the token budget; None when the item names no sources. evidence_hit:
    evidence_in for the item's quotes; None when it has none."""
    from assistant.eval.retrieval import first_hit_rank

    evidence = {"evidence_hit": evidence_in(item.evidence, ctx.kept) if item.evidence else None}
    if not item.sources:
        return {"retrieval_rank": None, "retrieval_hit": None, "context_hit": None, **evidence}
    rank = first_hit_rank([h.path for h in ctx.retrieved], item.sources)
    return {"retrieval_rank": rank, "retrieval_hit": rank > 0,
            "context_hit": first_hit_rank([h.path for h in ctx.kept], item.sources) > 0, **evidence}


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def evidence_in(evidence: Sequence[str], hits: Sequence[Hit]) -> bool:
    """Every evidence quote is in the prompt's documents (case and whitespace aside). Stricter
    than context_hit: the right page can be in the prompt with the wrong section of it."""
    docs = _squash(" ".join(h.text for h in hits))
    return all(_squash(e) in docs for e in evidence)


def evaluate(items: Sequence[MCQItem], models: dict, modes: Sequence[str], runs: int = 10, seed: int = 0,
             retriever=None, k: int = 4, generate: bool = False, whole_files_tokens: int = 0,
             on_step: Callable[[str], None] | None = None, done: dict | None = None,
             on_item: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Score every item for every model x mode x run. `models` maps a label to a ChatModel.
    Returns one row per (model, mode, run, item); `summarize` aggregates them.
    `done` maps (model, mode, item id) to rows of an earlier evaluation with the same settings:
    runs it has are reused, only the missing ones are scored (run r's option order depends only on
    seed + r), so a rerun resumes or adds runs. `on_item(rows)` receives each item's newly scored
    rows, so a caller can checkpoint them."""
    if any(m != "plain" for m in modes) and retriever is None:
        raise OnboardError("modes rag/hybrid need a docs index: pass --index NAME (build one with: onboard index PATH)")
    rows: list[dict] = []
    retrieval_cache: dict = {}  # rag queries do not depend on the model
    for label, model in models.items():
        scorer = LetterScorer(model)
        for mode in modes:
            for item in items:
                earlier = {r["run"]: r for r in (done or {}).get((label, mode, item.id), []) if r["run"] < runs}
                missing = [run for run in range(runs) if run not in earlier]
                if not missing:
                    rows.extend(earlier[run] for run in sorted(earlier))
                    if on_step:
                        on_step(f"{label} · {mode} · {item.id} (done earlier)")
                    continue
                t0 = time.perf_counter()
                ctx = prepare_context(scorer, item, mode, retriever, k, retrieval_cache, whole_files_tokens)
                memo: dict = {}
                new: list[dict] = []
                for run in missing:
                    row = {"model": label, "mode": mode, "run": run, "id": item.id, "kind": item.kind,
                           "answer": item.answer_letter, "question_tokens": ctx.question_tokens,
                           "too_long": ctx.too_long}
                    if mode != "plain":
                        row.update(retrieved=[h.ref for h in ctx.retrieved], kept=len(ctx.kept),
                                   truncated=ctx.truncated, **retrieval_fields(ctx, item))
                        if ctx.draft is not None:
                            row["draft"] = ctx.draft
                    if ctx.too_long:  # reported and counted wrong, never silently cut
                        row.update(correct_single=False, correct_cyclic=False, correct_calibrated=False)
                        if generate:
                            row["correct_generate"] = False
                        new.append(row)
                        continue
                    order = shuffled_order(item, seed, run)
                    row.update(score_item(scorer, item, mode, ctx, order, memo))
                    if generate:
                        row.update(generate_answer(model, item, mode, ctx, order, seed + run))
                    new.append(row)
                if on_item:
                    on_item(new)
                rows.extend(sorted([*earlier.values(), *new], key=lambda r: r["run"]))
                if on_step:
                    on_step(f"{label} · {mode} · {item.id} ({time.perf_counter() - t0:.1f}s)")
    calibrate(rows)
    return rows


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarize(rows: Sequence[dict]) -> list[dict]:
    """Per model x mode: accuracy mean ± std over runs for each method, retrieval hit@k,
    miss attribution (retrieval vs model), position bias and truncation counts."""
    out = []
    keys = list(dict.fromkeys((r["model"], r["mode"]) for r in rows))
    for model, mode in keys:
        group = [r for r in rows if r["model"] == model and r["mode"] == mode]
        runs = sorted({r["run"] for r in group})
        first = [r for r in group if r["run"] == runs[0]]
        s = {"model": model, "mode": mode, "runs": len(runs), "items": len(first),
             "too_long": sum(r["too_long"] for r in first),
             "truncated": sum(bool(r.get("truncated")) for r in first)}
        methods = [m for m in (*METHODS, "generate", "freeform") if any(f"correct_{m}" in r for r in group)]
        head = "cyclic" if "cyclic" in methods else methods[0]  # the method misses are counted with
        for m in methods:
            accs = [sum(bool(r.get(f"correct_{m}")) for r in group if r["run"] == run) / len(first) for run in runs]
            s[m], s[f"{m}_std"] = _mean_std(accs)
        if "generate" in methods:
            s["unparsed"] = sum(r.get("pred_generate") is None and not r["too_long"] for r in group) / len(group)
        if "freeform" in methods:  # answers the loop detector ended, and "none of these" picks
            s["looped"] = sum(bool(r.get("looped")) for r in first)
            s["none_picked"] = sum(r.get("pred_freeform") == "none" for r in group) / len(runs)
        picks = [r["pred_single"] for r in group if "pred_single" in r]
        if picks:
            top = max(set(picks), key=picks.count)
            s["top_letter"], s["top_letter_share"] = top, picks.count(top) / len(picks)
            s["letter_mass"] = float(np.mean([r["letter_mass"] for r in group if "letter_mass" in r]))
        judged = [r for r in first if r.get("retrieval_hit") is not None]
        with_evidence = [r for r in first if r.get("evidence_hit") is not None]
        if with_evidence:
            s["evidence_hit"] = sum(r["evidence_hit"] for r in with_evidence) / len(with_evidence)
            for key, reached in (("right_evidence_in", True), ("right_evidence_out", False)):
                # accuracy on the items whose evidence did / did not reach the prompt (all runs)
                part = [r for r in group if r.get("evidence_hit") is not None and bool(r["evidence_hit"]) is reached]
                if part:
                    s[key] = sum(bool(r.get(f"correct_{head}")) for r in part) / len(part)
        if judged:
            s["hit_at_k"] = sum(r["retrieval_hit"] for r in judged) / len(judged)
            s["context_hit"] = sum(bool(r["context_hit"]) for r in judged) / len(judged)
            wrong = [r for r in group if r.get("retrieval_hit") is not None and not r[f"correct_{head}"]]
            s["miss_retrieval"] = sum(not r["retrieval_hit"] for r in wrong) / len(runs)
            s["miss_model"] = sum(bool(r["retrieval_hit"]) for r in wrong) / len(runs)
        out.append(s)
    return out


def measure_speed(model, tokens: int = 64) -> dict:
    """Decode speed on a fixed prompt (for the report card)."""
    model.chat([{"role": "user", "content": "Explain in a few sentences what a docs index is."}],
               max_tokens=tokens, temperature=0.0)
    return model.last.to_dict()
