"""DPO stage: direct preference optimization with trl's DPOTrainer, LoRA by default.

Run as part of a recipe (`onboard train RECIPE`), or on its own:

```bash
python -m train.dpo --model smollm2-135m --data data/dpo.jsonl --out out/dpo --beta 0.1
python -m train.dpo --model out/sft/model --data data/dpo.jsonl feedback-dpo.jsonl --out out/dpo
accelerate launch -m train.dpo --model ... --data ... --out ...   # several GPUs (DDP)
```

Data: `{"prompt": [...], "chosen": [...], "rejected": [...]}` rows (conversational), as written
by `onboard synth` (grounded vs ungrounded answers) and `onboard feedback export --format dpo`.
With LoRA the reference model is the same network with the adapter switched off
(`ref_model=None`), so no second copy of the weights is loaded. Output: <out>/model, the adapter
merged into the weights (safetensors + tokenizer).
"""
from __future__ import annotations

import time
from pathlib import Path

from train.common import (
    StageContext,
    last_checkpoint,
    load_model,
    load_rows,
    lora_config,
    make_progress_callback,
    quiet_trainer,
    save_merged,
    stage_inputs,
    stage_parser,
    stop_at_epochs,
    train_metrics,
    training_args_kwargs,
)
from train.recipe import DpoParams


def dpo_config(p: DpoParams, ctx: StageContext):
    from trl import DPOConfig

    return DPOConfig(**training_args_kwargs(p, ctx.device, ctx.ckpt_dir, ctx.max_steps, ctx.progress),
                     beta=p.beta, max_length=p.max_length, loss_type=[p.loss_type])


def run_dpo(model_dir: Path, data_files: list[Path], p: DpoParams, ctx: StageContext) -> dict:
    """Train, merge the adapter, save to ctx.model_dir. Returns metrics for the manifest."""
    from datasets import Dataset
    from trl import DPOTrainer

    rows = load_rows(data_files, "dpo")
    model, tok = load_model(model_dir, ctx.device)
    callback = make_progress_callback(f"dpo {ctx.out_dir.name}", ctx.progress)
    trainer = DPOTrainer(model=model, ref_model=None, args=dpo_config(p, ctx),
                         train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=lora_config(p, model) if p.lora else None, callbacks=[callback])
    quiet_trainer(trainer)
    stop_at_epochs(trainer, p.epochs)
    resume = last_checkpoint(ctx.ckpt_dir)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    metrics = train_metrics(trainer, result, callback, started, resume)
    metrics["rows"] = len(rows)
    accs = [e["accuracies"] for e in callback.losses if "accuracies" in e]
    if accs:
        metrics["final_reward_accuracy"] = accs[-1]
    save_merged(trainer, tok, ctx.model_dir, ctx.device.torch_dtype)
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("DPO stage (trl DPOTrainer, LoRA)", "dpo", lr=5e-5)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--no-lora", action="store_true", help="full fine-tuning (loads a reference copy)")
    args = ap.parse_args(argv)
    model_dir, ctx = stage_inputs(args)
    p = DpoParams(epochs=args.epochs, beta=args.beta, lr=args.lr, lora=not args.no_lora)
    metrics = run_dpo(model_dir, args.data, p, ctx)
    print(f"saved {ctx.model_dir}  loss {metrics['first_loss']} -> {metrics['final_loss']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
