"""LoRA on the top layers only: training tokens/s of Qwen2.5-Coder-0.5B on 2 CPU threads,
all 24 layers adapted (the baseline, measured in the same run) vs the top 8 (`lora_layers: 8`),
with the loss on every position and with the LM head on the answer position only.

    .venv/bin/python bench/lora_layers.py [--model qwen2.5-coder-0.5b] [--tokens 700] [--steps 3]

Random 700-token rows, batch 2, r 16; the first step of each setting is warm-up and not counted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def step_rates(model, ids, steps: int, answer_only: bool) -> float:
    import torch

    rates = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        if answer_only:
            hidden = model.base_model.model.model(input_ids=ids).last_hidden_state
            logits = model.base_model.model.lm_head(hidden[:, -1:])
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), ids[:, -1])
        else:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        rates.append(ids.numel() / (time.perf_counter() - t0))
    return statistics.median(rates[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--tokens", type=int, default=700)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from assistant.settings import load_settings
    from train.base import hf_model_dir
    from train.common import lora_config
    from train.recipe import SftParams

    torch.set_num_threads(2)
    path = hf_model_dir(args.model, load_settings())
    ids = torch.randint(100, 10000, (2, args.tokens))
    result = {}
    for layers in (None, 8):
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model = get_peft_model(base, lora_config(SftParams(lora_r=16, lora_alpha=32, lora_layers=layers), base))
        model.train()
        for answer_only in (False, True):
            result[(layers, answer_only)] = step_rates(model, ids, args.steps, answer_only)
    print(f"{args.model}, {args.tokens}-token rows, batch 2, 2 threads, tokens/s (median of {args.steps} steps):")
    for answer_only in (False, True):
        full, top = result[(None, answer_only)], result[(8, answer_only)]
        what = "answer position only" if answer_only else "loss on every position"
        print(f"  {what:24} all layers {full:6.1f}   top 8 {top:6.1f}   ratio {top / full:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
