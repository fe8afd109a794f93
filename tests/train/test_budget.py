"""The budget planner (pure: rates in, plan out) and the measurement it runs on, on tiny models."""
from __future__ import annotations

import dataclasses

import pytest

from assistant.errors import OnboardError
from train.budget import FIT_MARGIN, Rates, Workload, fit_train_steps, natural_steps, plan_budget, sft_s
from train.measure import measure_gguf, measure_training, measure_training_speeds

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
    # top layer adapted: steps 3-4 are a second epoch over two rows, on the frozen-layer cache
    full, cached = measure_training_speeds(tiny_llama_dir, SftParams(lora_r=8, lora_alpha=16, max_length=256,
                                                                     lora_layers=1), tmp_path / "c", steps=4,
                                           shape="reading")
    assert full > 0 and cached > 0 and not (tmp_path / "c").exists()
    assert measure_training_speeds(tiny_llama_dir, SftParams(lora_r=8, lora_alpha=16, max_length=256),
                                   tmp_path / "n", steps=3, shape="reading")[1] is None  # nothing frozen
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


def test_cached_epochs_are_charged_at_the_cached_speed():
    fast = dataclasses.replace(RATES, train_cached_tokens_per_s=120)
    one_epoch = sft_s(10, 10, 1024, RATES)
    assert sft_s(10, 10, 1024, fast) == pytest.approx(one_epoch)  # the first epoch is not cached
    assert sft_s(30, 10, 1024, fast) == pytest.approx(one_epoch * (1 + 2 * 80 / 120))
    assert sft_s(30, 10, 1024, RATES) == pytest.approx(3 * one_epoch)  # no cached speed measured
    # the imported-data plan gets more steps out of the same budget with the cache
    work = dataclasses.replace(WORK, imported_rows=3000, reading_only=True, max_length=3072, sft_epochs=4,
                               has_dpo=False, merge_candidates=0)
    no_teacher = dataclasses.replace(RATES, teacher_prompt_tps=None, teacher_gen_tps=None, train_tokens_per_s=160)
    plain = plan_budget(90 * 60, no_teacher, work)
    cached = plan_budget(90 * 60, dataclasses.replace(no_teacher, train_cached_tokens_per_s=240), work)
    assert cached.max_steps > plain.max_steps > 93 and cached.total_s <= 90 * 60 * 0.85 + 1  # 93: one epoch


def test_fit_after_the_data_uses_the_time_left():
    rates = dataclasses.replace(RATES, train_tokens_per_s=160, train_cached_tokens_per_s=240)
    steps, secs = fit_train_steps(5400, 300, 1500, epoch_steps=90, epochs=4, max_length=3072, rates=rates)
    assert 90 < steps < 360 and secs <= 5400 * (1 - FIT_MARGIN) - 1800
    more, _ = fit_train_steps(5400, 300, 1000, epoch_steps=90, epochs=4, max_length=3072, rates=rates)
    assert more > steps  # a cheaper evaluation leaves more time to train
    assert fit_train_steps(5400, 0, 0, epoch_steps=10, epochs=2, max_length=3072, rates=rates)[0] == 20
    with pytest.raises(OnboardError, match="raise --budget"):
        fit_train_steps(600, 500, 100, epoch_steps=90, epochs=4, max_length=3072, rates=rates)


def test_fit_after_data_counts_the_real_rows(tiny_llama_dir, tmp_path):
    import json
    from types import SimpleNamespace

    from assistant.settings import load_settings
    from train.budget import fit_after_data
    from train.tiny import reading_rows

    (tmp_path / "reading.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reading_rows(6, 500)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nbase: x\nstages:\n  - {name: sft, type: sft, model: base, data: [reading.jsonl],"
                      " lora_layers: 1, epochs: 4, max_length: 1024}\n")
    cfg = SimpleNamespace(recipe=str(recipe), student=str(tiny_llama_dir), budget=5400.0)
    plan = {"rates": dataclasses.asdict(dataclasses.replace(RATES, train_cached_tokens_per_s=120)),
            "stage_s": {"quantize": 100.0, "evaluate": 1000.0, "report": 10.0}}
    fit = fit_after_data(load_settings(), cfg, tmp_path, 300.0, plan)
    assert 2500 < fit["tokens_per_epoch"] < 3500  # 6 rows of ~500 tokens
    assert fit["epoch_steps"] == -(-fit["tokens_per_epoch"] // (1024 * 0.95))  # packed 1024-token steps
    assert fit["max_steps"] == 4 * fit["epoch_steps"] and fit["epochs"] == 4.0  # tiny: all four epochs fit
    assert fit["after_s"] == 1110.0 and 0 < fit["train_s"] < 5400
    dpo = tmp_path / "d.yaml"
    dpo.write_text(recipe.read_text() + "  - {name: dpo, type: dpo, data: [reading.jsonl]}\n")
    assert fit_after_data(load_settings(), SimpleNamespace(**{**vars(cfg), "recipe": str(dpo)}), tmp_path, 0, plan) is None


def test_fit_after_data_takes_a_later_stages_epochs_off_the_first(tiny_llama_dir, tmp_path):
    import json
    from types import SimpleNamespace

    from assistant.settings import load_settings
    from train.budget import STAGE_LOAD_S, fit_after_data
    from train.tiny import reading_rows

    (tmp_path / "reading.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reading_rows(40, 500)))
    (tmp_path / "prose.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reading_rows(12, 500)))
    one = ("name: r\nbase: x\nstages:\n  - {name: sft, type: sft, model: base, data: [reading.jsonl],"
           " lora_layers: 1, epochs: 4, max_length: 1024}\n")
    two = one + "  - {name: prose, type: sft, data: [prose.jsonl], epochs: 3, max_length: 1024}\n"
    plan = {"rates": dataclasses.asdict(dataclasses.replace(RATES, train_tokens_per_s=20, train_cached_tokens_per_s=30)),
            "stage_s": {"quantize": 100.0, "evaluate": 300.0, "report": 10.0}}
    fits = []
    for i, text in enumerate((one, two)):
        recipe = tmp_path / f"r{i}.yaml"
        recipe.write_text(text)
        cfg = SimpleNamespace(recipe=str(recipe), student=str(tiny_llama_dir), budget=3000.0)
        fits.append(fit_after_data(load_settings(), cfg, tmp_path, 100.0, plan))
    assert fits[0]["later_stages_s"] == 0 and fits[0]["tokens_per_epoch"] == fits[1]["tokens_per_epoch"]
    assert fits[1]["later_stages_s"] > STAGE_LOAD_S  # three epochs of ~6k tokens at 20-30 tokens/s, and a load
    assert fits[1]["after_s"] == 410.0 + fits[1]["later_stages_s"]
    assert 0 < fits[1]["max_steps"] < fits[0]["max_steps"]  # the first stage gets what the second leaves
    for fit in fits:  # then times itself: up to all 4 epochs, as many as end in the time left (7 % kept)
        assert fit["most_steps"] == 4 * fit["epoch_steps"] and fit["time_limit_s"] == round(3000 * 0.93 - 100 - fit["after_s"], 1)
        assert fit["time_limit_s"] > fit["train_s"]
