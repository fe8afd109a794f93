"""Recipes end to end on tiny random llamas: seed.yaml, skip on rerun, resume after kill -9."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train.recipe import load_recipe
from train.run import run_recipe
from train.tiny import make_tiny_llama, write_tiny_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp("data"), n=12)


def test_seed_recipe_end_to_end_then_skips(tiny_llama_dir, tiny_data, tmp_path, run_cli):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partner = make_tiny_llama(tmp_path / "partner", seed=7)  # same arch, different weights
    out = tmp_path / "run"
    final = run_recipe(load_recipe("seed"), out, data_dir=tiny_data, base=str(tiny_llama_dir),
                       models={"partner": str(partner)}, max_steps=2, progress=False)
    assert final == out / "03-sft" / "model"
    manifests = [json.loads((out / d / "manifest.json").read_text()) for d in ("01-merge", "02-dpo", "03-sft")]
    assert [m["type"] for m in manifests] == ["merge", "dpo", "sft"]
    merge, dpo, sft = manifests
    assert merge["inputs"]["models"][1]["ref"] == "partner"
    assert dpo["inputs"]["models"][0]["sha256"] == merge["output"]["sha256"]  # chained by hash
    assert sft["metrics"]["steps"] == 2 and sft["metrics"]["tokens_per_s"] > 0
    assert sft["metrics"]["loss_curve"] and sft["config"]["params"]["lora_r"] == 256
    assert (out / "03-sft" / "loss.png").is_file() and not (out / "03-sft" / "checkpoints").exists()
    tok = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    assert model.generate(**ids, max_new_tokens=4, do_sample=False).shape[1] > ids["input_ids"].shape[1]

    # Rerun through the CLI: same inputs -> every stage skipped, nothing retrained.
    stamp = (out / "03-sft" / "manifest.json").stat().st_mtime_ns
    code, stdout, _ = run_cli("train", "seed", "--data", str(tiny_data), "--base", str(tiny_llama_dir),
                              "--input", f"partner={partner}", "--max-steps", "2", "--out", str(out), "--json")
    assert code == 0 and json.loads(stdout)["final_model"] == str(final)
    assert (out / "03-sft" / "manifest.json").stat().st_mtime_ns == stamp
    # Changed data -> the stages that read it rerun (dpo first, so dpo and sft).
    rows = (tiny_data / "dpo.jsonl").read_text().splitlines()
    changed = tmp_path / "data2"
    changed.mkdir()
    (changed / "dpo.jsonl").write_text("\n".join(rows[:-2]) + "\n")
    (changed / "sft.jsonl").write_text((tiny_data / "sft.jsonl").read_text())
    merge_stamp = (out / "01-merge" / "manifest.json").stat().st_mtime_ns
    run_recipe(load_recipe("seed"), out, data_dir=changed, base=str(tiny_llama_dir),
               models={"partner": str(partner)}, max_steps=2, progress=False)
    assert (out / "01-merge" / "manifest.json").stat().st_mtime_ns == merge_stamp
    assert (out / "03-sft" / "manifest.json").stat().st_mtime_ns != stamp


def test_merge_architecture_mismatch_in_recipe(tiny_llama_dir, tiny_data, tmp_path):
    from assistant.errors import OnboardError

    narrow = make_tiny_llama(tmp_path / "narrow", hidden=32)
    with pytest.raises(OnboardError, match="different architectures"):
        run_recipe(load_recipe("seed"), tmp_path / "run", data_dir=tiny_data, base=str(tiny_llama_dir),
                   models={"partner": str(narrow)}, max_steps=1, progress=False)


def test_interrupted_stage_resumes_from_checkpoint_after_kill9(tiny_llama_dir, tiny_data, tmp_path, onboard_home):
    recipe = tmp_path / "resume.yaml"
    recipe.write_text(
        "name: resume\nstages:\n  - type: sft\n    data: sft.jsonl\n    max_steps: 30\n    epochs: 5\n"
        "    save_steps: 3\n"
        "    batch_size: 1\n    max_length: 64\n    lora_r: 8\n    lora_alpha: 16\n    packing: false\n")
    out = tmp_path / "run"
    env = {**os.environ, "ONBOARD_HOME": str(onboard_home), "ONBOARD_TRAIN_THREADS": "1"}
    cmd = [sys.executable, "-m", "assistant.cli", "train", str(recipe), "--data", str(tiny_data),
           "--base", str(tiny_llama_dir), "--out", str(out), "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = out / "01-sft" / "checkpoints"
    deadline = time.time() + 240
    try:
        while not list(ckpts.glob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "01-sft" / "manifest.json").exists()
    final = run_recipe(load_recipe(recipe), out, data_dir=tiny_data, base=str(tiny_llama_dir), progress=False)
    m = json.loads((out / "01-sft" / "manifest.json").read_text())["metrics"]
    assert m["resumed_from"] and m["resumed_from"].startswith("checkpoint-")
    assert m["steps"] == 30 and int(m["resumed_from"].split("-")[1]) >= 3
    assert len(m["loss_curve"]) < 30  # only the steps after the checkpoint were run again
    assert (final / "model.safetensors").is_file()


@pytest.mark.slow
def test_docs_specialist_on_real_smollm2_few_steps(tmp_path, onboard_home):
    """The shipped default recipe on SmolLM2-135M (GGUF -> HF via base.py), 2 steps a stage."""
    from transformers import AutoConfig

    data = write_tiny_data(tmp_path / "data", n=40)
    final = run_recipe(load_recipe("docs-specialist"), tmp_path / "run", data_dir=data, max_steps=2,
                       progress=False)
    assert AutoConfig.from_pretrained(final).num_hidden_layers == 30
    merge = json.loads((tmp_path / "run" / "03-merge-back" / "manifest.json").read_text())["metrics"]
    assert merge["t"] in (0.5, 0.7, 0.85, 1.0) and len(merge["sweep"]) == 4
    assert all("domain_loss" in c and "general_loss" in c for c in merge["sweep"])
    assert list((onboard_home / "cache" / "hf").glob("smollm2-135m-*/model.safetensors"))


def test_a_time_fit_applies_to_the_first_sft_stage_only(tiny_llama_dir, tiny_data, tmp_path):
    recipe = tmp_path / "two.yaml"
    recipe.write_text("name: two\nstages:\n"
                      "  - {name: letters, type: sft, data: sft.jsonl, epochs: 3, lora_r: 8, lora_alpha: 16}\n"
                      "  - {name: prose, type: sft, model: previous, data: sft.jsonl, epochs: 3, lora_r: 8,"
                      " lora_alpha: 16}\n")
    out = tmp_path / "run"
    run_recipe(load_recipe(recipe), out, data_dir=tiny_data, base=str(tiny_llama_dir), progress=False,
               time_fit={"limit_s": 0.0, "planned_steps": None})
    first, second = (json.loads((out / d / "manifest.json").read_text()) for d in ("01-letters", "02-prose"))
    assert first["metrics"]["time_fit"]["why"] == "time limit reached" and first["metrics"]["steps"] == 1
    assert "time_fit" not in second["metrics"] and second["metrics"]["steps"] > 1  # its own epochs, untimed
