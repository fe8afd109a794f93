"""Free-form answer accuracy: the number that matches what users read.

    onboard eval --method freeform --mcq ../shared/eval/nitro_mcq_public.jsonl \\
        --model qwen2.5-coder-1.5b --modes rag,hybrid --runs 5 --index nitro --grader-checks

The MCQ methods (scoring.py) read a letter's log-probability with the options in the prompt; a
user never sees options. Here the model answers each question *without* its options, in the
chosen mode, through the same AnswerJob path `onboard ask` and the TUI use (greedy, with the
configured loop penalties and detector). A grader model (default: the best installed one) then
reads question + answer and picks which option the answer supports, by letter log-probabilities
(LetterScorer) averaged over every cyclic rotation of the four options, with an explicit last
choice "None of these"; a pick of "none" counts wrong. Answers are greedy, so each is generated
once and cached (cache/freeform/answers.jsonl under ONBOARD_HOME, keyed by model file and its
version, mode, index version and generation settings); runs differ only by the option order the
grader sees (seed + run), as the MCQ methods' runs do, and are reported as mean ± std with the
same tables and chart.

A grader of the same family as the answering model can be lenient (it reads answers the way it
would write them). `--grader-checks` measures the grader: the MCQ file's reference `evidence`
graded as if it were an answer (should be near 100 %) and another question's evidence as a
deliberately wrong answer (should be near 0 %).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from assistant.eval.mcq import LETTERS, MCQItem
from assistant.eval.scoring import LetterScorer, rotations, shuffled_order
from assistant.files import file_version

NONE_OF_THESE = "None of these (the answer supports no option above, or gives no answer)"
SYSTEM_GRADER = ("You grade answers about software documentation. Read the question and the answer given, "
                 "then pick the option that the answer given states or supports. If it supports none of "
                 "the options, pick the last option, None of these. Reply with the letter only (for example: B).")
CHECK_REFERENCE = "grader check: reference evidence"
CHECK_WRONG = "grader check: another item's evidence"
MAX_GRADED_CHARS = 3000  # an answer cut by max_tokens fits; the grader's context stays small


# --- answers -----------------------------------------------------------------------------
class AnswerCache:
    """Generated answers by key, one JSON line each, appended (fsync'ed) as they finish."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut by a kill: that answer is generated again
                    continue
                self.rows[row["key"]] = row

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def put(self, key: str, row: dict) -> dict:
        row = {"key": key, **row}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows[key] = row
        return row


def default_cache(settings) -> AnswerCache:
    return AnswerCache(settings.cache_dir / "freeform" / "answers.jsonl")


def index_version(settings, index: str | None) -> str | None:
    """Digest of an index's recorded sources (files and their chunks): a rebuilt or re-pointed
    index under the same name gets new answers. (A missing manifest reads as empty.)"""
    if not index:
        return None
    from assistant.rag.store import manifest_sources, read_manifest

    sources = manifest_sources(read_manifest(settings, index))
    return hashlib.sha256(json.dumps(sources, sort_keys=True, default=str).encode()).hexdigest()[:16]


def generation_config(settings, model_file: str, mode: str, index: str | None) -> dict:
    """Everything a greedy answer depends on (besides the question): the cache key's settings."""
    rag = mode != "plain"
    return {"model_file": model_file, "model_version": file_version(model_file) if model_file else None,
            "mode": mode, "index": index if rag else None,
            "index_version": index_version(settings, index) if rag else None,
            "k": settings.top_k, "n_ctx": settings.n_ctx, "max_tokens": settings.max_tokens,
            "repeat_penalty": settings.repeat_penalty, "frequency_penalty": settings.frequency_penalty,
            "presence_penalty": settings.presence_penalty, "loop": [settings.loop_ngram, settings.loop_repeats]}


def free_answers(settings, model_name: str, questions: Sequence[tuple[str, str]], mode: str,
                 index: str | None, cache: AnswerCache, session=None,
                 on_step: Callable[[str], None] | None = None, deadline: float | None = None) -> dict[str, dict]:
    """id -> answer row for each (id, question), greedy, through Session.job (what users get);
    cached answers are reused, new ones appended to `cache`. Past `deadline` (time.monotonic())
    no new answer is started: the result then lacks those ids (a later call resumes)."""
    from assistant.chat.session import Session
    from assistant.llm.chat_model import for_evaluation
    from assistant.llm.registry import resolve_model

    fresh = session is None  # our own session's model starts empty; a caller's is left as it is
    session = session or Session(settings, model_name=model_name, index=index, progress=False)
    config = generation_config(settings, str(resolve_model(model_name, settings)), mode, index)
    out = {}
    for qid, question in questions:
        key = json.dumps({**config, "question": question}, sort_keys=True)
        row = cache.get(key)
        if row is None and deadline is not None and time.monotonic() > deadline:
            continue
        if row is None:
            if fresh:  # loaded only once an answer is not cached
                for_evaluation(session.model(), settings)
                fresh = False
            t0 = time.perf_counter()
            result = session.job(question, mode=mode, index=index, temperature=0.0).run()
            row = cache.put(key, {"id": qid, "answer": result.answer, "looped": result.looped,
                                  "paths": [h.path for h in result.sources], "refs": [h.ref for h in result.sources],
                                  "draft": result.draft, "timings": result.timings,
                                  "seconds": round(time.perf_counter() - t0, 2)})
            if on_step:
                on_step(f"answer {model_name} · {mode} · {qid} ({row['seconds']:.1f}s)")
        out[qid] = row
    return out


# --- grading -----------------------------------------------------------------------------
def grader_messages(question: str, answer: str, options: Sequence[str]) -> list[dict]:
    text = answer.strip() or "(no answer)"
    if len(text) > MAX_GRADED_CHARS:
        text = text[:MAX_GRADED_CHARS] + " …"
    choices = [*options, NONE_OF_THESE]
    user = (f"Question: {question.strip()}\n\nAnswer given:\n{text}\n\nWhich option does the answer given "
            "support?\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(choices)))
    return [{"role": "system", "content": SYSTEM_GRADER}, {"role": "user", "content": user}]


def grade(scorer: LetterScorer, item: MCQItem, answer: str, order: tuple[int, ...], memo: dict) -> dict:
    """The option `answer` supports under `order` and all its rotations ("none" stays last):
    per-option letter log-probs summed over rotations; returns pred (letter or "none") and correctness."""
    n = len(item.options)
    per_choice = np.zeros(n + 1)
    for rot in rotations(order):
        if rot not in memo:
            memo[rot] = scorer.letter_logprobs(
                scorer.prompt(grader_messages(item.question, answer, [item.options[i] for i in rot])), n + 1)[0]
        lp = memo[rot]
        per_choice[list(rot)] += lp[:n]  # lp[j] belongs to option rot[j]
        per_choice[n] += lp[n]
    pick = int(np.argmax(per_choice))
    return {"order": "".join(LETTERS[i] for i in order), "pred_freeform": "none" if pick == n else LETTERS[pick],
            "correct_freeform": pick == item.answer}


def evidence_by_id(path: Path) -> dict[str, str]:
    """The `evidence` field of each item of an MCQ .jsonl (empty for other files)."""
    from assistant.files import iter_jsonl

    if Path(path).suffix != ".jsonl":
        return {}
    out = {}
    for n, obj in iter_jsonl(path):
        if isinstance(obj, dict) and obj.get("evidence"):
            out[str(obj.get("id") or f"item-{n}")] = str(obj["evidence"])
    return out


def check_answers(items: Sequence[MCQItem], evidence: dict[str, str]) -> dict[str, dict[str, str]]:
    """Grader checks: label -> id -> answer text. The reference evidence, and as a wrong answer
    the evidence of the next item (in file order) that does not mention the item's correct option."""
    ids = [it.id for it in items if it.id in evidence]
    reference = {i: evidence[i] for i in ids}
    wrong = {}
    by_id = {it.id: it for it in items}
    for pos, i in enumerate(ids):
        right = by_id[i].options[by_id[i].answer].lower()
        for step in range(1, len(ids)):
            other = evidence[ids[(pos + step) % len(ids)]]
            if right not in other.lower():
                wrong[i] = other
                break
    return {CHECK_REFERENCE: reference, CHECK_WRONG: wrong}


def grade_rows(scorer: LetterScorer, items: Sequence[MCQItem], answers: dict[str, dict], label: str, mode: str,
               runs: int, seed: int, done: dict, on_item: Callable[[list[dict]], None] | None = None,
               on_step: Callable[[str], None] | None = None) -> list[dict]:
    """One row per run and item for one answer set (answers: id -> row with "answer"); runs in
    `done[(label, mode, id)]` are reused, only missing ones graded."""
    from assistant.eval.retrieval import first_hit_rank

    rows = []
    for item in items:
        if item.id not in answers:
            continue
        earlier = {r["run"]: r for r in done.get((label, mode, item.id), []) if r["run"] < runs}
        missing = [run for run in range(runs) if run not in earlier]
        t0, memo, new = time.perf_counter(), {}, []
        a = answers[item.id]
        for run in missing:
            row = {"model": label, "mode": mode, "run": run, "id": item.id, "kind": item.kind,
                   "answer": item.answer_letter, "question_tokens": 0, "too_long": False,
                   "free_answer": a["answer"], "looped": bool(a.get("looped"))}
            if a.get("paths") is not None and item.sources and mode != "plain":
                rank = first_hit_rank(a["paths"], item.sources)
                row.update(retrieval_rank=rank, retrieval_hit=rank > 0, context_hit=rank > 0)
            row.update(grade(scorer, item, a["answer"], shuffled_order(item, seed, run), memo))
            new.append(row)
        if new and on_item:
            on_item(new)
        rows.extend(sorted([*earlier.values(), *new], key=lambda r: r["run"]))
        if on_step:
            on_step(f"grade {label} · {mode} · {item.id} ({time.perf_counter() - t0:.1f}s)")
    return rows


# --- the evaluation ----------------------------------------------------------------------
def best_installed(settings) -> str:
    """The strongest installed packaged model (registry order is weakest first)."""
    from assistant.llm.registry import PACKAGED, list_models

    installed = {r.name for r in list_models(settings) if r.installed}
    return next((name for name in reversed(PACKAGED) if name in installed), settings.model)


def run_freeform(settings, mcq: str, model_names: list[str], modes: list[str], runs: int = 5,
                 index: str | None = None, grader: str | None = None, checks: bool = False,
                 out_dir: Path | None = None, command: str = "", progress: bool = True) -> dict:
    """Free-form evaluation of models x modes (+ grader checks); results written like run_eval's."""
    from assistant.errors import OnboardError
    from assistant.eval.report import write_eval
    from assistant.eval.run import CHECKPOINT_NAME, Checkpoint, read_run_items
    from assistant.eval.scoring import summarize
    from assistant.files import sha256_file
    from assistant.llm.chat_model import load_eval_model
    from assistant.llm.registry import model_label, resolve_model

    path, items = read_run_items(mcq, modes, runs)
    index = index or settings.index
    grader = grader or best_installed(settings)
    grader_file = str(resolve_model(grader, settings))
    t0 = time.perf_counter()
    out_dir = Path(out_dir) if out_dir else settings.home / "eval" / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.stem}-freeform"
    labels = {model_label(n): n for n in model_names}
    files = {label: str(resolve_model(n, settings)) for label, n in labels.items()}
    checkpoint = Checkpoint(out_dir / CHECKPOINT_NAME, {
        "method": "freeform", "mcq": sha256_file(path), "seed": settings.seed, "grader": grader_file,
        **{k: v for k, v in generation_config(settings, "", "", index).items() if k not in ("model_file", "model_version", "mode")}},
        models={**files, CHECK_REFERENCE: grader_file, CHECK_WRONG: grader_file})
    say = _logger(progress)
    answer_sets = _answer_sets(settings, labels, modes, items, index, runs, checkpoint.done, say)
    if checks:
        evidence = evidence_by_id(path)
        if not evidence:
            raise OnboardError(f"--grader-checks needs an 'evidence' field in {path.name}")
        for label, texts in check_answers(items, evidence).items():
            answer_sets.append((label, "check", {i: {"answer": t} for i, t in texts.items()}))
    scorer = LetterScorer(load_eval_model(grader_file, settings))
    rows = []
    for label, mode, answers in answer_sets:
        graded = grade_rows(scorer, items, answers, label, mode, runs, settings.seed, checkpoint.done,
                            on_item=checkpoint.append, on_step=say)
        graded_ids = {r["id"] for r in graded}
        rows += graded + [r for it in items if it.id not in graded_ids
                          for r in checkpoint.done.get((label, mode, it.id), []) if r["run"] < runs]
    summary = summarize(rows)
    meta = {"mcq": str(path), "mcq_name": path.name, "method": "freeform", "items": len(items), "runs": runs,
            "modes": modes, "models": list(labels), "grader": model_label(grader), "index": index,
            "k": settings.top_k, "n_ctx": settings.n_ctx, "max_tokens": settings.max_tokens, "seed": settings.seed,
            "seconds": round(time.perf_counter() - t0, 1), "command": command}
    files_out = write_eval(out_dir, rows, summary, meta)
    return {"meta": meta, "summary": summary, "files": files_out}


def _answer_sets(settings, labels: dict[str, str], modes: list[str], items: Sequence[MCQItem], index: str,
                 runs: int, done: dict, say) -> list[tuple[str, str, dict]]:
    """(label, mode, id -> answer row) for each model x mode: every answer before any grading, so
    the grader (often the same loaded model) keeps its prompt prefix between items."""
    cache = default_cache(settings)
    sets = []
    for label, name in labels.items():
        for mode in modes:
            if all(len(done.get((label, mode, it.id), [])) >= runs for it in items):
                sets.append((label, mode, {}))  # graded earlier: rows come from the checkpoint
                continue
            sets.append((label, mode, free_answers(settings, name, [(it.id, it.question) for it in items],
                                                   mode, index, cache, on_step=say)))
    return sets


def _logger(progress: bool) -> Callable[[str], None] | None:
    import sys

    if not progress:
        return None
    return lambda msg: print(f"eval freeform: {msg}", file=sys.stderr, flush=True)
