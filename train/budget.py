"""Fit a build into a time budget: measure this machine, then size the data and the training.

    from train.measure import measure_rates  # (train/measure.py: measuring, and plan_for_build)

    rates = measure_rates(student="qwen2.5-coder-0.5b", teacher="qwen2.5-coder-1.5b", settings=s,
                          sft_params=recipe_sft_params, work_dir=Path("build/plan"))
    plan = plan_budget(90 * 60, rates, Workload(chunks=412, eval_items=40, general_items=30))
    plan.max_chunks, plan.max_steps, plan.stage_s      # what the build runs with, per-stage minutes

Measured (measure_rates, about a minute on 2 cores for a 0.5B student): the student's training
speed (real optimizer steps of our sft stage, tokens/s) and the llama.cpp prompt and generation
speed of the teacher (writes the data) and of the student GGUF (answers for DPO, is evaluated).
Estimated from those with the token counts below: every stage's seconds; the merge sweep and
the GGUF conversion are sized per GB of weights (MERGE_S_PER_GB, QUANT_S_PER_GB), the least
certain. The plan keeps `margin` of the budget free for the error. plan_budget is pure and
searches the largest data size (synthesis: chunks; imported Q&A: the step cap) whose data +
train + quantize + evaluate time fits; synthesized data is sized so the recipe's epochs over it
fit (pairs that training never reaches would waste teacher time).

With `lora_layers`, steps after the first epoch skip the frozen layers (train/layer_cache.py), so
the plan charges them at the cached speed, also measured. Once the data exists, the build fits the
training steps again to its real size and the time left (fit_train_steps).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.errors import OnboardError

# Token counts of one unit of work (SmolLM2 / Qwen tokenizers, measured on the Nitro data within
# ~20 %; errors here are what the margin is for).
QA_PROMPT_EXTRA = 220       # system prompt + instructions + questions already asked, besides the chunk
QA_COMPLETION = 120         # one JSON {"question", "answer"} reply (schema caps it at ~170)
STUDENT_PROMPT, STUDENT_COMPLETION = 90, 128   # closed-book answer for DPO (train.synth caps at 128)
CLOSED_ROW = 180            # closed-book sft row: system + question + answer
RAG_ROW_EXTRA = 200         # with-context row besides its chunks: system, question, numbering, answer
ITEM_TOKENS = 160           # one MCQ item shown once: template, question, four options
ROTATIONS = 4               # cyclic scoring: every item under each of 4 letter orders
OPTION_TOKENS = 80          # what a further rotation re-reads: the four options and the reply cue
HYBRID_DRAFT = 48           # tokens of hybrid mode's draft answer (its retrieval query)
OVERHEAD = 1.15             # retries, model loading, Python between the calls
TRAIN_OVERHEAD = 1.05       # model loading, tokenizing, checkpoints (build v4: 2435 s for a measured 2390)
READING_PAIR_TOKENS = 90    # reading rows (train/mcq_rows.py) per imported pair (Nitro: 267k tokens, 3000 pairs)
FIT_MARGIN = 0.10           # after the data stage: what is left to guess is training and evaluation only (0.05: build v6, 82 of 90 min)
TIME_FIT_MARGIN = 0.07      # the same once training times itself (train/time_fit.py): only the stages after it are guessed
                            # (build v8, 0.05: those ran 2.2 min over their estimate and it ended 0.5 min inside 55)
DPO_BATCH = 4               # rows a DPO step on CPU (train.common.detect_device)
DPO_COST = 2 * 4 / 3        # chosen + rejected, plus the reference forward (a third of fwd+bwd)
MERGE_S_PER_GB = 40.0       # one SLERP candidate: read two models, merge, write (per GB of HF weights)
QUANT_S_PER_GB = 12.0       # HF -> GGUF f16 and one quantized type, verified (0.5B, 2.5 GB: f16+Q8_0+Q4_K_M 48 s)
PACK_FILL = 0.95            # packed 1024-token rows are nearly full (best-fit packing)
STAGE_LOAD_S = 60.0         # a further training stage: load the previous stage's model, merge and save its own


@dataclass
class Rates:
    """What this machine does per second, as measured by measure_rates (or given by a test)."""

    train_tokens_per_s: float          # student, our sft stage, real (non-padding) tokens
    student_prompt_tps: float          # llama.cpp prompt processing of the student GGUF
    student_gen_tps: float             # llama.cpp generation of the student GGUF
    teacher_prompt_tps: float | None = None   # None: no teacher (imported data)
    teacher_gen_tps: float | None = None
    model_gb: float = 1.0              # HF weights of the student (merge / conversion cost)
    spent_s: float = 0.0               # budget already used (index, measuring)
    measure_s: float = 0.0
    train_cached_tokens_per_s: float | None = None  # from the second epoch, frozen layers cached


@dataclass
class Workload:
    """What the build will do, besides the sizes the plan chooses."""

    chunks: int                        # usable corpus chunks (synthesis samples from these)
    chunk_tokens: int = 300
    questions_per_chunk: int = 3
    rephrasings: int = 0
    imported_rows: int | None = None   # --data: Q&A pairs in the file; no teacher runs
    distractors: int = 3
    max_length: int = 1024
    sft_epochs: float = 2.0
    reading_only: bool = False         # the sft stage trains on reading rows (train/mcq_rows.py) only
    dpo_epochs: float = 1.0
    has_dpo: bool = True
    merge_candidates: int = 4          # merge stage: sweep size (1 without a sweep, 0 without merge)
    merge_eval_rows: int = 32
    eval_items: int = 0                # domain MCQ items (0: no --mcq)
    general_items: int = 30
    general_sizes: tuple = (ITEM_TOKENS, OPTION_TOKENS)  # the general set's own (item, option) tokens
    item_tokens: int = ITEM_TOKENS     # the domain MCQ's own sizes when known (mcq_sizes)
    option_tokens: int = OPTION_TOKENS
    runs: int = 10
    k: int = 4
    modes: tuple = ("plain", "rag", "hybrid")
    quant_types: int = 3


@dataclass
class Plan:
    budget_s: float
    max_chunks: int | None             # synthesis sample size (None: imported data)
    max_steps: int                     # cap for each training stage
    pairs: int                         # Q&A pairs trained on (expected, before filtering)
    sft_steps: int
    dpo_steps: int
    stage_s: dict = field(default_factory=dict)   # stage -> planned seconds
    margin_s: float = 0.0
    rates: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(self.stage_s.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "total_s": round(self.total_s, 1)}

    def lines(self) -> list[str]:
        """The plan as a person reads it: one line per stage, in minutes."""
        out = [f"{stage:<9} {s / 60:6.1f} min" for stage, s in self.stage_s.items()]
        out.append(f"{'margin':<9} {self.margin_s / 60:6.1f} min   (budget {self.budget_s / 60:.0f} min)")
        what = (f"{self.max_chunks} chunks -> ~{self.pairs} Q&A pairs" if self.max_chunks is not None
                else f"{self.pairs} imported pairs")
        out.append(f"data: {what}; training: sft {self.sft_steps} steps, dpo {self.dpo_steps} steps "
                   f"(cap {self.max_steps})")
        return out + list(self.notes)


# --- the pure part ------------------------------------------------------------------------------
def _rag_row(w: Workload) -> int:
    return min(w.max_length, RAG_ROW_EXTRA + (1 + w.distractors) * w.chunk_tokens)


def sft_s(steps: int, epoch_steps: int, max_length: int, r: Rates) -> float:
    """Seconds of `steps` packed sft steps: the first epoch at the full speed, the later ones at
    the cached speed where the frozen layers are cached (train/layer_cache.py)."""
    step_tokens = max_length * PACK_FILL
    first = min(steps, max(1, epoch_steps))
    later = r.train_cached_tokens_per_s or r.train_tokens_per_s
    return step_tokens * (first / r.train_tokens_per_s + (steps - first) / later)


def _largest(hi: int, fits) -> int:
    """The largest n in 1..hi with fits(n), for a `fits` that holds up to some n and not beyond
    (costs grow with n); 1 when none does (callers check n = 1 first)."""
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _dpo_step_s(w: Workload, r: Rates) -> float:
    return DPO_BATCH * DPO_COST * CLOSED_ROW / r.train_tokens_per_s


def natural_steps(pairs: int, w: Workload) -> tuple[int, int]:
    """(sft, dpo) optimizer steps the recipe's epochs take over `pairs` Q&A pairs (each pair is
    a closed-book and a with-context sft row; one dpo row at most)."""
    tokens = pairs * (READING_PAIR_TOKENS if w.reading_only else CLOSED_ROW + _rag_row(w))
    sft = math.ceil(w.sft_epochs * tokens / (w.max_length * PACK_FILL))
    dpo = math.ceil(w.dpo_epochs * pairs / DPO_BATCH) if w.has_dpo else 0
    return sft, dpo


def teacher_s_per_chunk(w: Workload, r: Rates) -> float:
    if not r.teacher_prompt_tps or not r.teacher_gen_tps:
        raise OnboardError("the plan needs the teacher's speed to size synthesized data")
    qa = w.questions_per_chunk * ((w.chunk_tokens + QA_PROMPT_EXTRA) / r.teacher_prompt_tps
                                  + QA_COMPLETION / r.teacher_gen_tps)
    rephrase_out = min(768, 1.4 * w.chunk_tokens + 32)
    rephrase = w.rephrasings * ((w.chunk_tokens + 80) / r.teacher_prompt_tps + rephrase_out / r.teacher_gen_tps)
    student = w.questions_per_chunk * (STUDENT_PROMPT / r.student_prompt_tps
                                       + STUDENT_COMPLETION / r.student_gen_tps) if w.has_dpo else 0.0
    return OVERHEAD * (qa + rephrase + student)


def fixed_stage_s(w: Workload, r: Rates) -> dict[str, float]:
    """Seconds of the stages whose work the plan does not size: merge, quantize, evaluate, report."""
    merge = w.merge_candidates * (MERGE_S_PER_GB * r.model_gb
                                  + w.merge_eval_rows * _rag_row(w) / (3 * r.train_tokens_per_s))
    quant = QUANT_S_PER_GB * r.model_gb * max(1, w.quant_types - 1) + 10 * w.quant_types
    # Per model: a retrieved chunk's KV is computed once for every item, mode and run that retrieves
    # it (llm/kv_blocks.py; items share about half their chunks). Per item and mode: question and
    # options once, then each distinct rotation re-reads only its options (the scorer memoizes
    # them; a run's shuffle is one of 6 rotation classes of 4 options). Hybrid drafts first.
    rereads = ROTATIONS * 6 * (1 - (5 / 6) ** w.runs)
    item = w.item_tokens + rereads * w.option_tokens
    general = w.general_sizes[0] + rereads * w.general_sizes[1]
    docs = 0 if tuple(w.modes) == ("plain",) else min(w.eval_items * w.k // 2, w.chunks) * w.chunk_tokens
    per_model = docs / r.student_prompt_tps
    for mode in w.modes:
        draft = w.item_tokens / r.student_prompt_tps + HYBRID_DRAFT / r.student_gen_tps if mode == "hybrid" else 0
        per_model += w.eval_items * (item / r.student_prompt_tps + draft)
    per_model += w.general_items * general / r.student_prompt_tps
    evaluate = 2 * per_model + 2 * 15  # base and tuned, + their decode-speed check
    # no OVERHEAD on the evaluation: the formula alone is within ~15 % either way of the real
    # builds (v3: 1,216 s against 1,392 taken; v4: 1,322 against 1,182); the margin covers that
    return {"merge": OVERHEAD * merge, "quantize": OVERHEAD * quant, "evaluate": evaluate, "report": 10.0}


def _train_s(sft_steps: int, dpo_steps: int, w: Workload, r: Rates, pairs: int = 0) -> float:
    epoch_steps = math.ceil(natural_steps(pairs, w)[0] / w.sft_epochs) if w.sft_epochs else sft_steps
    return TRAIN_OVERHEAD * (sft_s(sft_steps, epoch_steps, w.max_length, r) + dpo_steps * _dpo_step_s(w, r))


def fit_train_steps(budget_s: float, spent_s: float, after_s: float, epoch_steps: int, epochs: float,
                    max_length: int, rates: Rates, margin: float = FIT_MARGIN) -> tuple[int, float]:
    """(sft steps, their seconds) that fit what is left of the budget once the data exists:
    `spent_s` so far, `after_s` planned for the stages after training, `epoch_steps` the packed
    steps of one epoch of the real rows; never more than the recipe's `epochs`."""
    room = budget_s * (1 - margin) - spent_s - after_s
    most = max(1, math.ceil(epochs * epoch_steps))

    def cost(n: int) -> float:
        return TRAIN_OVERHEAD * sft_s(n, epoch_steps, max_length, rates)

    if cost(1) > room:
        raise OnboardError(f"--budget {budget_s / 60:.0f}m: after {spent_s / 60:.0f} min of index, plan and data, "
                           "no training step fits before the evaluation; raise --budget")
    steps = _largest(most, lambda n: cost(n) <= room)
    return steps, round(cost(steps), 1)


def plan_budget(budget_s: float, rates: Rates, work: Workload, margin: float = 0.15) -> Plan:
    """The largest data size (and matching step cap) whose stages fit `budget_s` minus `margin`
    of it and minus what was already spent. One clear error when even a minimal build cannot fit."""
    if budget_s <= 0:
        raise OnboardError("--budget must be positive, e.g. 90m")
    fixed = fixed_stage_s(work, rates)
    usable = budget_s * (1 - margin) - rates.spent_s - sum(fixed.values())
    if work.imported_rows is not None:
        plan = _plan_imported(budget_s, usable, rates, work)
    else:
        plan = _plan_synth(budget_s, usable, rates, work)
    # merge is a stage of the recipe, so it runs inside the build's train stage
    stage_s = {"spent": rates.spent_s, "data": plan.stage_s["data"],
               "train": plan.stage_s["train"] + fixed["merge"], "quantize": fixed["quantize"],
               "evaluate": fixed["evaluate"], "report": fixed["report"]}
    plan.stage_s = {k: round(v, 1) for k, v in stage_s.items()}
    plan.margin_s = round(budget_s - sum(plan.stage_s.values()), 1)
    plan.rates = {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(rates).items()}
    return plan


def _too_small(budget_s: float, need_s: float, fixed: dict) -> OnboardError:
    parts = ", ".join(f"{k} ~{v / 60:.0f}" for k, v in fixed.items() if v >= 30)
    return OnboardError(f"--budget {budget_s / 60:.0f}m is too small on this machine: the stages the plan cannot "
                        f"shrink need ~{need_s / 60:.0f} min ({parts} min) before any data or training; "
                        "raise --budget, or lower --runs / --modes")


def _plan_synth(budget_s: float, usable: float, r: Rates, w: Workload) -> Plan:
    per_chunk = teacher_s_per_chunk(w, r)

    def cost(n: int) -> tuple[float, float, int, int]:
        sft, dpo = natural_steps(n * w.questions_per_chunk, w)
        return n * per_chunk, _train_s(sft, dpo, w, r, n * w.questions_per_chunk), sft, dpo

    if usable <= 0 or sum(cost(1)[:2]) > usable:
        raise _too_small(budget_s, budget_s - usable, fixed_stage_s(w, r))
    lo = _largest(max(1, w.chunks), lambda n: sum(cost(n)[:2]) <= usable)
    data_s, train_s, sft, dpo = cost(lo)
    notes = [] if lo < w.chunks else [f"the whole corpus ({w.chunks} chunks) fits: the budget has room to spare"]
    return Plan(budget_s, max_chunks=lo, max_steps=max(sft, dpo, 1), pairs=lo * w.questions_per_chunk,
                sft_steps=sft, dpo_steps=dpo, stage_s={"data": data_s, "train": train_s}, notes=notes)


def _plan_imported(budget_s: float, usable: float, r: Rates, w: Workload) -> Plan:
    rows = w.imported_rows or 0
    data_s = OVERHEAD * (30 + 0.02 * rows)  # MiniLM embeds ~100 pairs/s on 2 cores (measured: 3000 in 27 s CPU)
    nat_sft, nat_dpo = natural_steps(rows, w)

    def train_s(cap: int) -> float:
        return _train_s(min(cap, nat_sft), min(cap, nat_dpo), w, r, rows)

    room = usable - data_s
    if room <= 0 or train_s(1) > room:
        raise _too_small(budget_s, budget_s - room, fixed_stage_s(w, r))
    lo = _largest(max(nat_sft, nat_dpo, 1), lambda n: train_s(n) <= room)
    sft, dpo = min(lo, nat_sft), min(lo, nat_dpo)
    notes = []
    if lo < max(nat_sft, nat_dpo):
        notes.append(f"training capped at {lo} steps to fit the budget (the recipe's epochs stop it "
                     f"sooner if its rows run out; the recipe's epochs over {rows} pairs would be ~{nat_sft})")
    return Plan(budget_s, max_chunks=None, max_steps=lo, pairs=rows, sft_steps=sft, dpo_steps=dpo,
                stage_s={"data": data_s, "train": train_s(lo)}, notes=notes)


def parse_budget(text: str) -> float:
    """'90m', '1.5h', '5400s' or '5400' -> seconds; one clear error otherwise."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = str(text).strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        value = -1
    if not value > 0:
        raise OnboardError(f"--budget {text!r}: give a duration such as 90m, 1.5h or 5400s")
    return value


def mcq_sizes(items) -> tuple[int, int]:
    """(item tokens, option-block tokens) of an MCQ set, ~4 characters a token: a set with long,
    paraphrased options costs several times the public set's short ones to score."""
    if not items:
        return ITEM_TOKENS, OPTION_TOKENS
    options = sum(sum(len(o) + 4 for o in it.options) for it in items) / len(items) / 4 + 10
    question = sum(len(it.question) for it in items) / len(items) / 4
    return int(60 + question + options), int(options)


def fit_after_data(settings, cfg, data_dir: Path, spent_s: float, plan: dict) -> dict | None:
    """Refit the plan's step cap to the rows the data stage wrote and the time left, for recipes
    whose trainers are sft only (a dpo stage keeps the plan's cap). The first sft stage is the
    one sized; a later one (cpu-specialist's short prose stage) runs its epochs over its own rows,
    and its time comes off the first's. The first stage then times itself (train/time_fit.py):
    up to `most_steps`, as many as end within `time_limit_s`. None: nothing to refit."""
    from train.base import hf_model_dir
    from train.common import load_rows
    from train.recipe import load_recipe

    stages = load_recipe(cfg.recipe).stages
    sft = [s for s in stages if s.type == "sft"]
    if not sft or any(s.type == "dpo" for s in stages) or not plan.get("rates"):
        return None
    if not all((Path(data_dir) / d).is_file() for s in sft for d in s.data):
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_model_dir(cfg.student, settings))

    def epoch(stage) -> tuple[int, int]:
        """(tokens, packed steps) of one epoch of a stage's rows."""
        tokens = 0
        for row in load_rows([Path(data_dir) / d for d in stage.data], "sft", mixed=True):
            for m in row.get("messages") or row["prompt"] + row["completion"]:
                tokens += len(tok(m["content"])["input_ids"]) + 5  # + the chat template's turn markers
        return tokens, max(1, math.ceil(tokens / (stage.params.max_length * PACK_FILL)))

    rates = Rates(**{k: v for k, v in plan["rates"].items() if k in Rates.__dataclass_fields__})
    later_s = 0.0
    for stage in sft[1:]:
        p, steps = stage.params, epoch(stage)[1]
        later_s += STAGE_LOAD_S + TRAIN_OVERHEAD * sft_s(math.ceil(p.epochs * steps), steps, p.max_length, rates)
    params = sft[0].params
    tokens, epoch_steps = epoch(sft[0])
    after = later_s + sum(plan.get("stage_s", {}).get(k, 0.0) for k in ("quantize", "evaluate", "report"))
    steps, train_s = fit_train_steps(cfg.budget, spent_s, after, epoch_steps, params.epochs, params.max_length, rates)
    # the estimate starts the stage; its real step times then set its length within this limit
    time_limit_s = cfg.budget * (1 - TIME_FIT_MARGIN) - spent_s - after
    return {"tokens_per_epoch": tokens, "epoch_steps": epoch_steps, "max_steps": steps,
            "epochs": round(steps / epoch_steps, 2), "train_s": train_s, "later_stages_s": round(later_s, 1),
            "after_s": round(after, 1), "most_steps": max(steps, math.ceil(params.epochs * epoch_steps)),
            "time_limit_s": round(max(train_s, time_limit_s), 1)}
