"""What the sft and dpo stages share: device profile, data loading, trainer arguments, live
progress, checkpoints and metrics. Not a stage itself; see train/sft.py and train/dpo.py.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import OnboardError
from assistant.files import iter_jsonl


@dataclass
class Device:
    """Where and how to train. CPU: float32 weights, no gradient checkpointing (RAM is plentiful,
    compute is not), bf16 autocast where AMX makes bf16 matmuls fast (assistant/cpu.py; the
    weights and LoRA updates stay float32). CUDA: bf16, bigger batches, gradient checkpointing,
    Liger kernels when installed."""

    kind: str  # cpu | cuda
    dtype: str  # float32 | bfloat16
    batch_size: int  # rows a step when rows are not packed (dpo, sft with packing off)
    gradient_checkpointing: bool
    liger: bool = False
    threads: int | None = None
    autocast_bf16: bool = False  # CPU mixed precision (Trainer's bf16=True with use_cpu)
    packed_batch_size: int | None = None  # packed max_length rows a step (sft); None: batch_size

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def detect_device(threads: int | None = None) -> Device:
    import importlib.util

    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return Device("cuda", "bfloat16" if bf16 else "float32", batch_size=16,
                      gradient_checkpointing=True, liger=importlib.util.find_spec("liger_kernel") is not None)
    threads = threads or int(os.environ.get("ONBOARD_TRAIN_THREADS", 0)) or (os.cpu_count() or 1)
    torch.set_num_threads(threads)  # torch's default can oversubscribe a shared machine
    from assistant.cpu import bf16_training

    # One packed 1024-token row holds ~8 Q&A pairs, like trl's default batch of 8 rows.
    return Device("cpu", "float32", batch_size=4, gradient_checkpointing=False, threads=threads,
                  autocast_bf16=bf16_training(), packed_batch_size=1)


# --- data ------------------------------------------------------------------------------------
ROW_KEYS = {
    "sft": (("prompt", "completion"), ("messages",)),
    "dpo": (("prompt", "chosen", "rejected"),),
}


def read_jsonl(path: Path, kind: str) -> list[dict]:
    """Rows of a synthesis / feedback-export JSONL, checked against the stage's format."""
    if not path.is_file():
        raise OnboardError(f"training data not found: {path} (create it with `onboard synth`, "
                           "or pass --data DIR pointing at the folder that holds it)")
    rows = []
    accepted = ROW_KEYS[kind]
    for n, row in iter_jsonl(path, f"one {kind} row per line"):
        if not isinstance(row, dict) or not any(all(k in row for k in keys) for keys in accepted):
            want = " or ".join("{" + ", ".join(keys) + "}" for keys in accepted)
            raise OnboardError(f"{path}:{n}: a {kind} row needs {want}")
        keys = next(keys for keys in accepted if all(k in row for k in keys))
        rows.append({k: row[k] for k in keys})
    if not rows:
        raise OnboardError(f"{path} has no rows; regenerate it with `onboard synth`")
    return rows


def load_rows(files: list[Path], kind: str, mixed: bool = False) -> list[dict]:
    """mixed: the stage accepts rows of different formats together (sft tokenizes them itself)."""
    rows: list[dict] = []
    for path in files:
        rows.extend(read_jsonl(path, kind))
    shapes = {tuple(sorted(r)) for r in rows}
    if len(shapes) > 1 and not mixed:
        raise OnboardError(f"{kind} data mixes row formats {sorted(shapes)}; use one format per stage")
    return rows


# --- progress, metrics -----------------------------------------------------------------------
def make_progress_callback(title: str, enabled: bool):
    """A TrainerCallback that records the loss curve and (optionally) shows a rich progress bar."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self):
            self.losses: list[dict] = []
            self.progress = None
            self.task = None

        def on_train_begin(self, args, state, control, **kw):
            self.started = time.perf_counter()
            if enabled:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
                from rich.progress import Progress as Bar

                self.progress = Bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                                    TimeRemainingColumn(), transient=False)
                self.progress.start()
                self.task = self.progress.add_task(title, total=state.max_steps, completed=state.global_step,
                                                   loss="-")

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" in logs:
                # time_s: seconds since this process began training (a resumed run starts again at 0),
                # for speed measurements that skip the warm-up step (train.budget)
                entry = {"step": state.global_step, "loss": float(logs["loss"]),
                         "time_s": round(time.perf_counter() - self.started, 3),
                         "tokens": int(state.num_input_tokens_seen or 0)}
                for key in ("rewards/accuracies", "rewards/margins", "learning_rate"):
                    if key in logs:
                        entry[key.split("/")[-1]] = float(logs[key])
                self.losses.append(entry)
                if self.progress is not None:
                    self.progress.update(self.task, loss=f"{entry['loss']:.4f}")

        def on_step_end(self, args, state, control, **kw):
            if self.progress is not None:  # the total too: a time fit (train/time_fit.py) may change it
                self.progress.update(self.task, completed=state.global_step, total=state.max_steps)

        def on_train_end(self, args, state, control, **kw):
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return Progress()


def quiet_trainer(trainer) -> None:
    """With tqdm off, Trainer prints every log dict to stdout; our callback shows progress instead
    (and stdout stays clean for `onboard train --json`)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def stop_at_epochs(trainer, epochs: float) -> None:
    """A step cap (--max-steps, a budget plan) is a ceiling: where it is above the steps the
    recipe's epochs take, drop it, since Trainer would otherwise cycle the data up to the cap."""
    args = trainer.args
    if args.max_steps <= 0:
        return
    batches = len(trainer.get_train_dataloader())
    natural = math.ceil(epochs * math.ceil(batches / max(1, args.gradient_accumulation_steps)))
    if args.max_steps >= natural:
        args.max_steps = -1


def loss_chart(losses: list[dict], out: Path, title: str) -> Path | None:
    """PNG of the loss curve next to the manifest (people look at it; numbers go in the JSON)."""
    if len(losses) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot([p["step"] for p in losses], [p["loss"] for p in losses], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out


# --- checkpoints -----------------------------------------------------------------------------
def last_checkpoint(ckpt_dir: Path) -> Path | None:
    """Newest complete Trainer checkpoint. Trainer writes trainer_state.json last, so a folder
    without a readable one was cut by a kill -9 mid-save: delete it and use the one before."""
    if not ckpt_dir.is_dir():
        return None
    found = []
    for d in ckpt_dir.glob("checkpoint-*"):
        try:
            step = int(d.name.split("-")[-1])
            json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
        except (ValueError, OSError):
            shutil.rmtree(d, ignore_errors=True)
            continue
        found.append((step, d))
    return max(found)[1] if found else None


def training_args_kwargs(p, device: Device, ckpt_dir: Path, max_steps: int | None,
                         progress: bool, packed: bool = False) -> dict[str, Any]:
    """TrainingArguments shared by our SFTConfig / DPOConfig. Speed choices, each on purpose:
    no eval loop, no tqdm, logging every step (cheap, gives the live loss), checkpoints only as
    often as resumability needs, gradient checkpointing only where memory is short (CUDA)."""
    steps = p.max_steps if p.max_steps else -1
    if max_steps:
        steps = min(steps, max_steps) if steps > 0 else max_steps
    gc = device.gradient_checkpointing if p.gradient_checkpointing is None else p.gradient_checkpointing
    kw: dict[str, Any] = dict(
        output_dir=str(ckpt_dir), num_train_epochs=p.epochs, max_steps=steps,
        per_device_train_batch_size=p.batch_size or (packed and device.packed_batch_size) or device.batch_size,
        gradient_accumulation_steps=p.grad_accum, learning_rate=p.lr, lr_scheduler_type=p.scheduler,
        warmup_steps=p.warmup_ratio, weight_decay=p.weight_decay, logging_steps=1, save_strategy="steps",
        save_steps=p.save_steps, save_total_limit=2, eval_strategy="no", report_to="none",
        disable_tqdm=True, seed=p.seed, data_seed=p.seed, gradient_checkpointing=gc,
        bf16=device.dtype == "bfloat16" or device.autocast_bf16, fp16=False, use_cpu=device.kind == "cpu",
        dataloader_num_workers=0, include_num_input_tokens_seen="non_padding", save_only_model=False,
        log_level="error",
    )
    if device.liger:
        kw["use_liger_kernel"] = True
    return kw


def lora_config(p, model=None, task: str = "CAUSAL_LM"):
    """p.lora_layers = N adapts only the top N transformer layers: the backward pass then stops
    there, which on a CPU is most of a step (Qwen2.5-0.5B, 700-token rows, answer-only loss:
    top 8 of 24 layers trains at 2x the tokens/s of all layers)."""
    from peft import LoraConfig

    target = p.target_modules
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if p.lora_layers and n and p.lora_layers < n:
        target = top_layer_linears(model, n - p.lora_layers, p.target_modules)
    return LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                      target_modules=target, task_type=task)


def top_layer_linears(model, first_layer: int, wanted: str | list[str]) -> list[str]:
    """Full names of the Linear modules in layers >= first_layer (peft's layers_to_transform
    does not combine with "all-linear"); `wanted` = "all-linear" or module short names."""
    import re

    import torch

    names = []
    for name, module in model.named_modules():
        m = re.search(r"\.layers\.(\d+)\.", name)
        if not isinstance(module, torch.nn.Linear) or not m or int(m.group(1)) < first_layer:
            continue
        if wanted == "all-linear" or name.rsplit(".", 1)[-1] in wanted:
            names.append(name)
    return names


def load_model(path: Path, device: Device, packed: bool = False):
    """packed: batches are padding-free packed rows, so attention runs per example
    (train/attention.py) instead of over the whole flattened batch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {}
    if packed:
        from train.attention import register

        kw["attn_implementation"] = register()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=device.torch_dtype, **kw)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def save_merged(trainer, tok, out_dir: Path, dtype) -> None:
    """Fold the LoRA adapter into the weights and save a plain HF model folder, atomically."""
    from peft import PeftModel

    model = trainer.model
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model = model.to(dtype)
    model.config.use_cache = True
    model.config._attn_implementation = "sdpa"  # the saved model must load without train/attention.py
    tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def train_metrics(trainer, result, callback, started: float, resumed_from: Path | None) -> dict:
    state = trainer.state
    runtime = float(result.metrics.get("train_runtime") or (time.time() - started))
    tokens = int(state.num_input_tokens_seen or 0)
    # Tokens of this session only (a resumed run counted the earlier part before the kill).
    session_tokens = tokens - int(getattr(trainer, "_initial_num_input_tokens_seen", 0) or 0)
    losses = callback.losses
    return {
        "steps": int(state.global_step),
        "train_loss": float(result.training_loss) if result.training_loss is not None else None,
        "first_loss": losses[0]["loss"] if losses else None,
        "final_loss": losses[-1]["loss"] if losses else None,
        "loss_curve": losses,
        "tokens_seen": tokens,
        "train_runtime_s": round(runtime, 3),
        "tokens_per_s": round(session_tokens / runtime, 1) if runtime > 0 else None,
        "resumed_from": resumed_from.name if resumed_from else None,
    }


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass
class StageContext:
    """What run.py hands each stage."""

    out_dir: Path  # the stage folder: model/, checkpoints/, manifest.json
    device: Device
    max_steps: int | None = None
    progress: bool = True
    settings: Any = None
    extras: dict = field(default_factory=dict)  # e.g. heldout rows, scorer, base model dir

    @property
    def model_dir(self) -> Path:
        return self.out_dir / "model"

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"


def stage_parser(description: str, data_kind: str, lr: float):
    """The options every training stage script shares (see train/sft.py, train/dpo.py main)."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", required=True, help="registry name, .gguf or HF folder")
    ap.add_argument("--data", required=True, nargs="+", type=Path, help=f"{data_kind}.jsonl file(s)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=lr)
    return ap


def stage_inputs(args) -> tuple[Path, StageContext]:
    """(base model folder, stage context) for a stage script's parsed stage_parser arguments."""
    from assistant.settings import load_settings
    from train.base import hf_model_dir

    settings = load_settings()
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(out_dir=args.out, device=detect_device(), max_steps=args.max_steps, settings=settings)
    return hf_model_dir(args.model, settings), ctx
