"""SFT throughput: our sft stage vs a plain trl SFTTrainer with defaults, same model/data/device.

    .venv/bin/python bench/train_throughput.py                         # SmolLM2-135M, 8 steps x 2 pairs
    .venv/bin/python bench/train_throughput.py --model tiny --steps 20 # tiny random llama (quick)
    .venv/bin/python bench/train_throughput.py --data data/docs/sft.jsonl --steps 30   # on a GPU

Data by default: the reference experiment's GPT-4 Nitro Q&A (../shared/data/nitro_qa_gpt4.csv,
imported as `onboard data import` does: real, variable-length rows), else a built-in 96-row set.

Both runs use the same LoRA (r 256, alpha 512, all linear layers) and the same rows; the baseline
keeps every other trl default (batch 8, padding to the longest row, gradient checkpointing on,
bf16 autocast - which trl enables on CPU too). Ours: best-fit packing fed padding-free with
attention per packed example (train/attention.py), the LM head scoring only answer tokens, no
gradient checkpointing on CPU, bf16 autocast on AMX CPUs, per-device batch/dtype (bf16 +
checkpointing + Liger on CUDA), torch threads pinned. Throughput = real (non-padding) tokens per
second of training (Trainer's num_input_tokens_seen / train_runtime), so padding the baseline
computes on does not count for it. Prints the ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def baseline(model_dir: Path, rows: list[dict], steps: int, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    # use_cpu is required by trl's default bf16=True when there is no GPU; nothing else changes.
    args = SFTConfig(output_dir=str(out), max_steps=steps, report_to="none", save_strategy="no",
                     include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                     use_cpu=not torch.cuda.is_available())
    trainer = SFTTrainer(model=str(model_dir), args=args, train_dataset=Dataset.from_list(rows),
                         peft_config=LoraConfig(r=256, lora_alpha=512, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    from train.common import quiet_trainer

    quiet_trainer(trainer)
    result = trainer.train()
    runtime = result.metrics["train_runtime"]
    return {"tokens": trainer.state.num_input_tokens_seen, "runtime_s": runtime,
            "tokens_per_s": trainer.state.num_input_tokens_seen / runtime}


def ours(model_dir: Path, rows_file: Path, steps: int, out: Path) -> dict:
    from train.common import StageContext, detect_device
    from train.recipe import SftParams
    from train.sft import run_sft

    out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(out_dir=out, device=detect_device(), max_steps=steps, progress=False)
    m = run_sft(model_dir, [rows_file], SftParams(save_steps=10_000), ctx)
    return {"tokens": m["tokens_seen"], "runtime_s": m["train_runtime_s"], "tokens_per_s": m["tokens_per_s"]}


def _default_data(work: Path, rows: int) -> Path | None:
    csv = Path(__file__).resolve().parents[2] / "shared" / "data" / "nitro_qa_gpt4.csv"
    if not csv.is_file():
        return None
    from train.data_import import import_qa

    out = work / "gpt4"
    import_qa(csv, out)
    sft = out / "sft.jsonl"
    lines = sft.read_text(encoding="utf-8").splitlines()[:rows]
    sft.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sft


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="'tiny', a registry name, .gguf or HF folder")
    ap.add_argument("--data", type=Path, help="sft.jsonl (default: the shared GPT-4 Nitro Q&A, else a built-in set)")
    ap.add_argument("--rows", type=int, default=400, help="rows taken from the default data")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="baseline/ours pairs; the median ratio is reported")
    args = ap.parse_args()
    import torch

    from assistant.settings import load_settings
    from train.base import hf_model_dir
    from train.common import read_jsonl
    from train.tiny import make_tiny_llama, write_tiny_data

    work = Path(tempfile.mkdtemp(prefix="onboard-bench-"))
    model_dir = make_tiny_llama(work / "tiny") if args.model == "tiny" else hf_model_dir(args.model, load_settings())
    data = args.data or _default_data(work, args.rows) or write_tiny_data(work / "data", n=96) / "sft.jsonl"
    rows = read_jsonl(data, "sft")
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"model {model_dir.name}, {len(rows)} rows, {args.steps} steps each, device {device}")
    t = time.time()
    ratios, runs = [], []
    for r in range(args.repeats):  # alternating, so drift on a shared machine hits both sides
        base = baseline(model_dir, rows, args.steps, work / f"baseline{r}")
        print(f"plain trl SFTTrainer (defaults + same LoRA): {base['tokens_per_s']:.0f} tokens/s "
              f"({base['tokens']} tokens in {base['runtime_s']:.1f}s)", flush=True)
        mine = ours(model_dir, data, args.steps, work / f"ours{r}")
        print(f"onboard sft stage:                           {mine['tokens_per_s']:.0f} tokens/s "
              f"({mine['tokens']} tokens in {mine['runtime_s']:.1f}s)", flush=True)
        ratios.append(mine["tokens_per_s"] / base["tokens_per_s"])
        runs.append({"baseline": base, "ours": mine})
    ratio = statistics.median(ratios)
    print(f"speed-up: {ratio:.2f}x median of {' '.join(f'{x:.2f}' for x in ratios)} (target >= 2x)  "
          f"[total {time.time() - t:.0f}s]")
    print(json.dumps({"device": device, "model": str(model_dir), "runs": runs, "ratio": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
