"""The budget planner (pure: rates in, plan out) and the measurement it runs on, on tiny models."""
from __future__ import annotations

import dataclasses

import pytest

from assistant.errors import OnboardError
from train.budget import Rates, Workload, measure_gguf, measure_training, natural_steps, plan_budget

# Roughly a 0.5B student and a 1.5B teacher on 2 cores.
RATES = Rates(train_tokens_per_s=80, student_prompt_tps=700, student_gen_tps=25,
              teacher_prompt_tps=60, teacher_gen_tps=9, model_gb=2.0, spent_s=120)
WORK = Workload(chunks=400, eval_items=40, general_items=40, runs=2)


def test_plan_fits_the_budget_and_names_every_stage():
    plan = plan_budget(90 * 60, RATES, WORK)
    assert list(plan.stage_s) == ["spent", "data", "train", "quantize", "evaluate", "report"]
    assert plan.total_s <= 90 * 60 * 0.85 + 1 and plan.margin_s >= 90 * 60 * 0.15 - 1
    assert 1 <= plan.max_chunks < WORK.chunks and plan.pairs == plan.max_chunks * WORK.questions_per_chunk
    assert plan.max_steps == max(plan.sft_steps, plan.dpo_steps)
    assert (plan.sft_steps, plan.dpo_steps) == natural_steps(plan.pairs, WORK)
    # the largest size that fits: one more chunk would not (plain mode: the evaluation's cost does
    # not depend on the corpus size, as it does through the documents' KV in rag mode)
    plain = dataclasses.replace(WORK, modes=("plain",))
    fit = plan_budget(90 * 60, RATES, plain)
    bigger = plan_budget(90 * 60, RATES, dataclasses.replace(plain, chunks=fit.max_chunks + 1), margin=0.15)
    assert bigger.max_chunks == fit.max_chunks
    lines = plan.lines()
    assert any(line.startswith("train") and "min" in line for line in lines)
    assert plan.to_dict()["total_s"] == pytest.approx(plan.total_s, abs=0.1)


def test_more_time_or_faster_machine_means_more_data():
    base = plan_budget(90 * 60, RATES, WORK)
    assert plan_budget(180 * 60, RATES, WORK).max_chunks > base.max_chunks
    faster = dataclasses.replace(RATES, teacher_gen_tps=18, train_tokens_per_s=160)
    assert plan_budget(90 * 60, faster, WORK).max_chunks > base.max_chunks
    slower_eval = dataclasses.replace(RATES, student_prompt_tps=400)  # evaluation eats into training time
    assert plan_budget(90 * 60, slower_eval, WORK).max_chunks < base.max_chunks


def test_small_corpus_is_used_whole_and_tiny_budget_fails_clearly():
    plan = plan_budget(90 * 60, RATES, dataclasses.replace(WORK, chunks=5))
    assert plan.max_chunks == 5 and any("whole corpus" in n for n in plan.notes)
    with pytest.raises(OnboardError, match="too small"):
        plan_budget(10 * 60, RATES, WORK)
    with pytest.raises(OnboardError, match="positive"):
        plan_budget(0, RATES, WORK)


def test_imported_data_caps_the_steps_instead():
    work = dataclasses.replace(WORK, imported_rows=3000)
    plan = plan_budget(90 * 60, dataclasses.replace(RATES, teacher_prompt_tps=None, teacher_gen_tps=None), work)
    nat_sft, _ = natural_steps(3000, work)
    assert plan.max_chunks is None and plan.pairs == 3000
    assert 1 <= plan.max_steps < nat_sft and plan.sft_steps == plan.max_steps
    assert plan.total_s <= 90 * 60 * 0.85 + 1 and any("capped" in n for n in plan.notes)
    roomy = plan_budget(90 * 60, RATES, dataclasses.replace(work, imported_rows=20))
    assert roomy.sft_steps == natural_steps(20, work)[0] and not roomy.notes


def test_measurement_on_tiny_models(tiny_llama_dir, smollm_gguf, tmp_path):
    from assistant.settings import load_settings
    from train.recipe import SftParams

    tps = measure_training(tiny_llama_dir, SftParams(lora_r=8, lora_alpha=16, max_length=256), tmp_path / "m",
                           steps=2, rows=16)
    assert tps > 0 and not (tmp_path / "m").exists()  # the trial run leaves nothing behind
    reading = measure_training(tiny_llama_dir, SftParams(lora_r=8, lora_alpha=16, max_length=256),
                               tmp_path / "r", steps=2, shape="reading")
    assert reading > 0 and not (tmp_path / "r").exists()
    prompt_tps, gen_tps = measure_gguf(smollm_gguf, load_settings(), prompt_tokens=64, gen_tokens=8)
    assert prompt_tps > gen_tps > 0  # prompt tokens are batched, generated ones are not


def test_long_options_make_the_evaluation_cost_more():
    from assistant.eval.mcq import MCQItem
    from train.budget import mcq_sizes

    short = [MCQItem(id="a", question="Which port?", options=["3928", "8080", "11434", "5000"], answer=0)]
    long = [MCQItem(id="b", question="Which port?", options=["The server listens on port 3928 unless the "
                                                              "settings file names another one " * 3] * 4, answer=0)]
    assert mcq_sizes(short)[1] < mcq_sizes(long)[1] and mcq_sizes([]) == (160, 80)
    plans = [plan_budget(90 * 60, RATES, dataclasses.replace(WORK, item_tokens=it, option_tokens=op))
             for it, op in (mcq_sizes(short), mcq_sizes(long))]
    assert plans[0].stage_s["evaluate"] < plans[1].stage_s["evaluate"]


def test_reading_rows_fill_the_row_length_with_documents():
    from train.tiny import reading_rows

    rows = reading_rows(3, 800)
    assert len(rows) == 3 and all(len(r["completion"][0]["content"]) == 1 for r in rows)  # a letter
    chars = len(rows[0]["prompt"][0]["content"])
    assert 800 * 3 < chars < 800 * 4.5  # ~4 characters a token


def test_the_general_set_is_sized_by_its_own_items():
    from train.budget import fixed_stage_s

    as_domain = fixed_stage_s(dataclasses.replace(WORK, general_items=40), RATES)["evaluate"]
    own = fixed_stage_s(dataclasses.replace(WORK, general_items=40, general_sizes=(92, 20)), RATES)["evaluate"]
    assert own < as_domain
