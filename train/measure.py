"""Measure this machine for the budget planner (train/budget.py): the student's training speed
(real optimizer steps of our sft stage) and the llama.cpp speeds of the student and the teacher.

    rates = measure_rates(student="qwen2.5-coder-0.5b", teacher="qwen2.5-coder-1.5b", settings=s,
                          sft_params=recipe_sft_params, work_dir=Path("build/plan"))
    plan = plan_for_build(settings, build_config, build_dir, index_result, index_s)   # both, for `onboard build`
"""
from __future__ import annotations

import time
from pathlib import Path

from assistant.errors import OnboardError
from train.budget import Plan, Rates, Workload, mcq_sizes, plan_budget

def measure_training(model_dir: Path, params, work_dir: Path, steps: int = 4, rows: int = 64,
                     shape: str = "qa") -> float:
    """Tokens/s of our sft stage on `model_dir` (see measure_training_speeds)."""
    return measure_training_speeds(model_dir, params, work_dir, steps, rows, shape)[0]


def measure_training_speeds(model_dir: Path, params, work_dir: Path, steps: int = 4, rows: int = 64,
                            shape: str = "qa") -> tuple[float, float | None]:
    """(tokens/s, tokens/s with the frozen layers cached or None) of our sft stage on `model_dir`:
    `steps` real optimizer steps (the recipe's LoRA, packing and device choices), timed from the
    end of the first (warm-up) step, on rows of `shape` "qa" (short Q&A rows, ~half answer tokens:
    errs low for real mixes) or "reading" (one ~max_length row a step of documents and a one-letter
    answer, skipping most of the LM head). Reading rows with `lora_layers`: two rows, so steps 1-2
    are the first epoch and the later ones run on the cache (train/layer_cache.py)."""
    import dataclasses
    import json
    import shutil

    from train.common import StageContext, detect_device
    from train.sft import run_sft
    from train.tiny import reading_rows, tiny_rows

    work_dir = Path(work_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    data = work_dir / "sft.jsonl"
    cached = shape == "reading" and bool(params.lora_layers) and params.cache_frozen_layers and steps >= 3
    n = 2 if cached else steps + 1
    made = reading_rows(n, int(params.max_length * 0.85)) if shape == "reading" else tiny_rows(rows)[0]
    data.write_text("".join(json.dumps(r) + "\n" for r in made), encoding="utf-8")
    epochs = steps / 2 if cached else float(steps)
    p = dataclasses.replace(params, max_steps=None, epochs=epochs, save_steps=10_000, holdout=0.0)
    ctx = StageContext(out_dir=work_dir / "run", device=detect_device(), max_steps=steps, progress=False)
    try:
        metrics = run_sft(Path(model_dir), [data], p, ctx)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    curve = [e for e in metrics.get("loss_curve", []) if e.get("tokens")]

    def rate(a: dict, b: dict) -> float | None:
        return (b["tokens"] - a["tokens"]) / (b["time_s"] - a["time_s"]) if b["time_s"] > a["time_s"] else None

    # timed from the end of the first step: its warm-up (allocations, first touch of the weights)
    # once made a build plan half its steps
    if cached and len(curve) >= 3 and rate(curve[0], curve[1]) and rate(curve[1], curve[-1]) \
            and metrics.get("layer_cache", {}).get("hits"):
        return rate(curve[0], curve[1]), rate(curve[1], curve[-1])
    if len(curve) >= 2 and rate(curve[0], curve[-1]):
        return rate(curve[0], curve[-1]), None
    if not metrics.get("tokens_per_s"):
        raise OnboardError(f"could not measure training speed on {model_dir}")
    return float(metrics["tokens_per_s"]), None


def measure_gguf(path: Path, settings, prompt_tokens: int = 256, gen_tokens: int = 24) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) of a GGUF under llama.cpp with the settings' threads."""
    from assistant.llm.chat_model import load_chat_model

    model = load_chat_model(path, n_ctx=max(1024, prompt_tokens + gen_tokens + 8), n_threads=settings.n_threads,
                            seed=settings.seed, kv_reuse=False)
    llm = model.llm
    text = ("The server reads its configuration at start-up, loads the model named in the request, "
            "and answers on the port given in the settings file. ") * 40
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True)[:prompt_tokens]
    with model.lock:
        llm.reset()
        t0 = time.perf_counter()
        llm.create_completion(tokens, max_tokens=1, temperature=0.0)
        prompt_s = time.perf_counter() - t0
        t0 = time.perf_counter()  # same prompt again: llama.cpp keeps it, so this is generation
        out = llm.create_completion(tokens, max_tokens=gen_tokens, temperature=0.0,
                                    logit_bias={llm.token_eos(): -100.0})
        gen_s = time.perf_counter() - t0
        llm.reset()
    generated = max(1, out.get("usage", {}).get("completion_tokens", 1))
    return len(tokens) / prompt_s, generated / gen_s


def measure_http_teacher(url: str, model: str | None) -> tuple[float, float]:
    """An HTTP teacher: one timed 32-token reply. Prompt speed is not separable there, so the
    reply's whole time is charged to generation and prompts are assumed 8x faster."""
    from train.teacher import HttpTeacher

    teacher = HttpTeacher(url, model=model, retries=0)
    t0 = time.perf_counter()
    teacher.ask_text([{"role": "user", "content": "Count from one to forty in words."}], max_tokens=32,
                     temperature=0.0)
    gen = max(1, teacher.stats.completion_tokens) / (time.perf_counter() - t0)
    return 8 * gen, gen


def measure_rates(student: str, teacher: str | None, settings, sft_params, work_dir: Path,
                  say=lambda msg: None, steps: int = 4, shape: str = "qa") -> Rates:
    """Everything plan_budget needs from this machine; teacher None: no synthesis (imported data)."""
    from assistant.llm.registry import resolve_model
    from train.base import hf_model_dir

    t0 = time.perf_counter()
    model_dir = hf_model_dir(student, settings)
    gb = sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 1e9
    say(f"measuring training speed of {student} ({steps} optimizer steps)")
    train_tps, cached_tps = measure_training_speeds(model_dir, sft_params, Path(work_dir), steps=steps, shape=shape)
    say("measuring llama.cpp speed of the student" + (" and the teacher" if teacher else ""))
    sp, sg = measure_gguf(resolve_model(student, settings), settings)
    tp = tg = None
    if teacher == student:
        tp, tg = sp, sg
    elif teacher and teacher.startswith(("http://", "https://")):
        tp, tg = measure_http_teacher(teacher, None)
    elif teacher:
        tp, tg = measure_gguf(resolve_model(teacher, settings), settings)
    took = time.perf_counter() - t0
    return Rates(train_tokens_per_s=train_tps, train_cached_tokens_per_s=cached_tps, student_prompt_tps=sp, student_gen_tps=sg,
                 teacher_prompt_tps=tp, teacher_gen_tps=tg, model_gb=round(gb, 3), measure_s=took)


def plan_for_build(settings, cfg, build_dir: Path, index_result: dict, index_s: float, say=lambda m: None) -> Plan:
    """Measure and plan for an `onboard build` config (assistant.build.BuildConfig) after its index."""
    from assistant.eval.mcq import general_mcq_path, read_mcq
    from train.data_import import read_pairs
    from train.recipe import SftParams, load_recipe

    recipe = load_recipe(cfg.recipe)
    of = {s.type: s for s in reversed(recipe.stages)}  # the first stage of each type
    sft, dpo, merge = of.get("sft"), of.get("dpo"), of.get("merge")
    params = sft.params if sft else SftParams()
    reading_only = bool(sft and sft.data) and all(d.startswith("reading") for d in sft.data)
    rates = measure_rates(cfg.student, None if cfg.data else cfg.teacher, settings, params,
                          Path(build_dir) / "plan-measure", say=say, shape="reading" if reading_only else "qa")
    rates.spent_s = index_s + rates.measure_s
    quiet = lambda m: None  # noqa: E731 - warnings were shown by the eval stage's own reading
    items = read_mcq(cfg.mcq, warn=quiet) if cfg.mcq and cfg.mcq != "general" else []
    item_tokens, option_tokens = mcq_sizes(items)
    general = read_mcq(general_mcq_path(), warn=quiet)  # short items: sized as the domain's, ~10 min too long
    work = Workload(
        chunks=max(1, int(index_result.get("chunks") or 1)), chunk_tokens=settings.chunk_tokens,
        questions_per_chunk=cfg.questions_per_chunk, rephrasings=1,  # the build's synthesis writes one
        imported_rows=len(read_pairs(Path(cfg.data))) if cfg.data else None, max_length=params.max_length,
        sft_epochs=params.epochs if sft else 0.0, reading_only=reading_only, dpo_epochs=dpo.params.epochs if dpo else 0.0,
        has_dpo=dpo is not None, merge_candidates=(len(merge.params.sweep or []) or 1) if merge else 0,
        merge_eval_rows=merge.params.eval_rows if merge else 0,
        eval_items=len(items), item_tokens=item_tokens, option_tokens=option_tokens,
        general_items=len(general), general_sizes=mcq_sizes(general), runs=cfg.runs or 1, k=cfg.k,
        modes=tuple(cfg.modes), quant_types=len(cfg.quant_types))
    return plan_budget(cfg.budget, rates, work)
