"""Each stage for real on a tiny random llama (SmolLM2 tokenizer): sft, dpo, merge."""
from __future__ import annotations

import json

import pytest

from assistant.errors import OnboardError
from train.common import StageContext, detect_device, read_jsonl
from train.recipe import DpoParams, MergeParams, SftParams
from train.tiny import make_tiny_llama, write_tiny_data


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp("data"))


def _ctx(tmp_path, name, max_steps=None):
    out = tmp_path / name
    out.mkdir()
    return StageContext(out_dir=out, device=detect_device(), max_steps=max_steps, progress=False)


def _generate(model_dir, prompt="Which port does the server listen on?"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    return out.shape[1] - ids["input_ids"].shape[1]


def test_sft_loss_decreases_and_model_generates(tiny_llama_dir, tiny_data, tmp_path):
    from train.sft import run_sft

    # Small packed batches (~128 tokens a step) keep it quick; a high LR makes the drop clear.
    p = SftParams(lr=3e-3, batch_size=2, max_length=64, lora_r=16, lora_alpha=32, save_steps=100, epochs=5,
                  holdout=0.15, warmup_ratio=0.0, scheduler="constant")
    ctx = _ctx(tmp_path, "sft", max_steps=14)
    m = run_sft(tiny_llama_dir, [tiny_data / "sft.jsonl"], p, ctx)
    curve = [e["loss"] for e in m["loss_curve"]]
    assert m["steps"] == 14 and len(curve) == 14
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3 - 0.2, curve  # it learns the fixed dataset
    assert m["tokens_per_s"] > 0 and m["tokens_seen"] > 0
    times = [e["time_s"] for e in m["loss_curve"]]
    assert 0 <= times[0] < 300 and times == sorted(times)  # seconds since training began, not a raw clock
    assert m["heldout_rows"] == 3 and len(read_jsonl(ctx.out_dir / "heldout.jsonl", "sft")) == 3
    assert (ctx.model_dir / "model.safetensors").is_file() and not list(ctx.model_dir.glob("adapter*"))
    assert _generate(ctx.model_dir) > 0


def test_dpo_stage_trains_lora_and_saves_merged_model(tiny_llama_dir, tiny_data, tmp_path):
    from train.dpo import run_dpo

    ctx = _ctx(tmp_path, "dpo", max_steps=3)
    m = run_dpo(tiny_llama_dir, [tiny_data / "dpo.jsonl"], DpoParams(batch_size=2, max_length=96, lora_r=8,
                                                                     lora_alpha=16), ctx)
    assert m["steps"] == 3 and abs(m["first_loss"] - 0.6931) < 1e-3  # log 2: policy == reference at start
    assert json.loads((ctx.model_dir / "config.json").read_text())["model_type"] == "llama"
    assert _generate(ctx.model_dir) > 0


def test_merge_slerp_schedules_and_architecture_mismatch(tiny_llama_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from train.merge import run_merge_stage

    other = make_tiny_llama(tmp_path / "other", seed=1)
    ctx = _ctx(tmp_path, "m0")
    run_merge_stage(tiny_llama_dir, other, MergeParams(t=0.0), ctx)
    a, b = load_file(tiny_llama_dir / "model.safetensors"), load_file(other / "model.safetensors")
    merged = load_file(ctx.model_dir / "model.safetensors")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(merged[key], a[key], atol=1e-6)  # t = 0 is the first model
    ctx = _ctx(tmp_path, "sched")
    m = run_merge_stage(tiny_llama_dir, other, MergeParams(t={"self_attn": [0.0, 1.0], "default": 0.5}), ctx)
    merged = load_file(ctx.model_dir / "model.safetensors")
    assert torch.allclose(merged["model.layers.0.self_attn.q_proj.weight"], a[key], atol=1e-6)
    assert torch.allclose(merged["model.layers.1.self_attn.q_proj.weight"],
                          b["model.layers.1.self_attn.q_proj.weight"], atol=1e-6)
    mlp = "model.layers.0.mlp.up_proj.weight"
    assert not torch.allclose(merged[mlp], a[mlp]) and not torch.allclose(merged[mlp], b[mlp])
    assert (ctx.model_dir / "tokenizer.json").is_file() and m["t"]["default"] == 0.5

    narrow = make_tiny_llama(tmp_path / "narrow", hidden=32)
    with pytest.raises(OnboardError, match="different architectures.*hidden_size: 64 vs 32"):
        run_merge_stage(tiny_llama_dir, narrow, MergeParams(), _ctx(tmp_path, "bad"))


def test_merge_sweep_uses_pluggable_scorer(tiny_llama_dir, tmp_path):
    from train.merge import run_merge_stage

    other = make_tiny_llama(tmp_path / "other", seed=2)
    seen = []

    def prefer_half(model_dir):  # an evaluation module would return MCQ accuracy here
        t = float(model_dir.name[1:])
        seen.append(t)
        return -abs(t - 0.5)

    ctx = _ctx(tmp_path, "sweep")
    m = run_merge_stage(tiny_llama_dir, other, MergeParams(sweep=[0.2, 0.5, 0.9]), ctx, scorer=prefer_half)
    assert seen == [0.2, 0.5, 0.9] and m["t"] == 0.5 and [c["t"] for c in m["sweep"]] == seen
    assert (ctx.model_dir / "config.json").is_file() and not (ctx.out_dir / "sweep").exists()


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_stage_script_runs_from_its_command_line(stage, tiny_llama_dir, tiny_data, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"train.{stage}").main
    out = tmp_path / stage
    assert main(["--model", str(tiny_llama_dir), "--data", str(tiny_data / f"{stage}.jsonl"),
                 "--out", str(out), "--max-steps", "1"]) == 0
    assert (out / "model" / "model.safetensors").is_file()
    assert f"saved {out / 'model'}  loss " in capsys.readouterr().out


def test_sft_trains_multi_question_chats_on_their_answers_only(tiny_llama_dir, tiny_data, tmp_path):
    from transformers import AutoTokenizer

    from train.mcq_rows import conversation_row
    from train.sft import conversation_tokens, run_sft

    row = conversation_row([("Which port?\n\nA. 80\nB. 3928\nC. 1\nD. 2", "B"),
                            ("Which flag?\n\nA. --a\nB. --b\nC. --c\nD. --d", "D")], docs=[])
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    t = conversation_tokens(row["messages"], tok)
    assert len(t["labels"]) == len(t["input_ids"])
    assert tok.decode([x for x in t["labels"] if x != -100]) == "B<|im_end|>\nD<|im_end|>\n"
    chats = tmp_path / "reading.jsonl"
    chats.write_text("".join(json.dumps(row) + "\n" for _ in range(6)))
    p = SftParams(lr=1e-3, batch_size=2, max_length=256, lora_r=8, lora_alpha=16, save_steps=100,
                  warmup_ratio=0.0, scheduler="constant")
    m = run_sft(tiny_llama_dir, [chats, tiny_data / "sft.jsonl"], p, _ctx(tmp_path, "sft", max_steps=2))
    assert m["steps"] == 2 and m["rows"] == 6 + len(read_jsonl(tiny_data / "sft.jsonl", "sft"))
    assert m["first_loss"] is not None and m["first_loss"] > 0


def test_step_cap_above_the_epochs_stops_at_the_epochs(tiny_llama_dir, tiny_data, tmp_path):
    """A cap is a ceiling: Trainer alone would cycle the data up to it (a budget plan's cap
    above the recipe's epochs trained past them)."""
    from train.sft import run_sft

    p = SftParams(batch_size=2, max_length=64, lora_r=8, lora_alpha=16, save_steps=100, epochs=1)
    m = run_sft(tiny_llama_dir, [tiny_data / "sft.jsonl"], p, _ctx(tmp_path, "sft", max_steps=500))
    assert 1 <= m["steps"] < 100, m["steps"]
