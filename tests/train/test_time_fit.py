"""A stage that times itself (train/time_fit.py), on a real tiny llama with the frozen-layer cache."""
from __future__ import annotations

import json
import math

import pytest

from train.common import StageContext, detect_device
from train.recipe import SftParams
from train.tiny import make_tiny_llama, write_tiny_data
from train.time_fit import PROBE_STEPS, TAIL_S, redraw_schedule, steps_that_fit


@pytest.fixture(scope="module")
def deep_llama(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("deep") / "llama", layers=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp("data"))


def _train(model_dir, data, out, limit_s: float, planned: int | None = None):
    from train.sft import run_sft

    p = SftParams(lr=3e-3, batch_size=2, max_length=64, lora_r=8, lora_alpha=16, lora_layers=2, epochs=4,
                  save_steps=100, warmup_ratio=0.0, scheduler="cosine")
    out.mkdir(exist_ok=True)
    ctx = StageContext(out_dir=out, device=detect_device(), progress=False,
                       extras={"time_fit": {"limit_s": limit_s, "planned_steps": planned}})
    return run_sft(model_dir, [data / "sft.jsonl"], p, ctx)


def _cosine(lr: float, steps: int) -> list[float]:
    """The learning rate each step trains with (logged per step) on a cosine without warm-up."""
    return [lr * 0.5 * (1 + math.cos(math.pi * i / steps)) for i in range(steps)]


def test_steps_that_fit_counts_whole_steps_in_the_room_left():
    assert steps_that_fit(100 + TAIL_S, 40, 10, 6.0, 50) == 20      # 60 s left: 10 more steps
    assert steps_that_fit(1e6, 40, 10, 6.0, 50) == 50                 # never past the recipe's epochs
    assert steps_that_fit(10, 40, 10, 6.0, 50) == 11                  # over already: one more step at most


def test_a_generous_limit_trains_every_epoch_and_says_so(deep_llama, data, tmp_path):
    metrics = _train(deep_llama, data, tmp_path / "run", limit_s=1e6)
    fit = metrics["time_fit"]
    epoch_steps = fit["at_step"] - PROBE_STEPS
    assert fit["why"] == "measured" and fit["steps"] == fit["of"] == 4 * epoch_steps == metrics["steps"]
    assert fit["full_step_s"] > 0 and fit["cached_step_s"] > 0 and fit["epochs"] == 4.0
    assert json.loads((tmp_path / "run" / "time-fit.json").read_text())["steps"] == fit["steps"]
    assert [e["learning_rate"] for e in metrics["loss_curve"]] == pytest.approx(_cosine(3e-3, fit["steps"]))


def test_no_time_left_stops_after_the_first_step(deep_llama, data, tmp_path):
    metrics = _train(deep_llama, data, tmp_path / "run", limit_s=0.0)
    assert metrics["time_fit"]["why"] == "time limit reached"
    assert metrics["steps"] == metrics["time_fit"]["steps"] == 1 == len(metrics["loss_curve"])


def test_a_recorded_decision_is_kept_and_the_schedule_ends_there(deep_llama, data, tmp_path):
    # what a run resumed after a kill finds: the decision made before it
    out = tmp_path / "run"
    out.mkdir()
    (out / "time-fit.json").write_text(json.dumps({"steps": 7, "of": 99, "why": "measured"}))
    metrics = _train(deep_llama, data, out, limit_s=1e6)
    assert metrics["steps"] == 7 and metrics["time_fit"]["steps"] == 7
    # redrawn: a cosine over 7 steps, not over the 4 epochs the Trainer was started with
    assert [e["learning_rate"] for e in metrics["loss_curve"]] == pytest.approx(_cosine(3e-3, 7))


def test_redraw_schedule_gives_the_cosine_a_new_end():
    import torch
    from transformers import TrainingArguments, get_scheduler

    args = TrainingArguments(output_dir="/tmp/unused", lr_scheduler_type="cosine", report_to=[])
    opt = torch.optim.AdamW([torch.zeros(2, requires_grad=True)], lr=1e-3)
    sched = get_scheduler("cosine", optimizer=opt, num_warmup_steps=0, num_training_steps=100)
    for _ in range(30):
        opt.step()
        sched.step()
    before = opt.param_groups[0]["lr"]
    redraw_schedule(sched, args, horizon=60, warmup=0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5, rel=1e-6)  # half way down a 60-step cosine
    assert before > 1e-3 * 0.5
    for _ in range(30):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert sched.state_dict()["last_epoch"] == 60  # still the Trainer's scheduler, saved as before
