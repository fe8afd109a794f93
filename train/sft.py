"""SFT stage: LoRA supervised fine-tuning with trl's SFTTrainer + peft, adapter merged at the end.

Run as part of a recipe (`onboard train RECIPE`), or on its own:

```bash
python -m train.sft --model smollm2-135m --data data/sft.jsonl --out out/sft --max-steps 50
python -m train.sft --model out/dpo/model --data data/sft.jsonl --out out/sft \
    --lora-r 256 --lora-alpha 512 --lr 2e-4 --epochs 2
# several GPUs: the same command under accelerate (DDP; add an FSDP config for big models)
accelerate launch -m train.sft --model ... --data ... --out ...
```

Data: conversational prompt/completion rows as written by `onboard synth` (sft.jsonl):
`{"prompt": [{"role": "user", ...}], "completion": [{"role": "assistant", ...}]}` - trl applies
the chat template and masks the prompt, so the loss is on the answers only (`assistant_only_loss`
does not work with SmolLM2's template). `{"messages": [...]}` rows (several answers in one chat,
e.g. the multi-question reading rows of train/mcq_rows.py) are accepted too, also mixed with
prompt/completion files: they are tokenized here with the loss on every assistant turn
(`conversation_tokens`), for any chat template.

Speed: sequences are packed best-fit-decreasing and fed padding-free (trl's collator passes the
example boundaries and train/attention.py runs attention per example, so packed
examples never attend to each other and no work is spent on the cross-example blocks); no eval
loop; gradient checkpointing only on CUDA; bf16 autocast on CPUs with AMX; the LM head scores
only answer tokens; with `lora_layers`, the frozen bottom layers run once per row, not once per
epoch (train/layer_cache.py). Output: <out>/model (merged, safetensors + tokenizer).
"""
from __future__ import annotations

import contextlib
import random
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
from train.layer_cache import frozen_layer_cache
from train.recipe import SftParams


def split_holdout(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    if fraction <= 0 or len(rows) < 4:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n = max(1, int(len(rows) * fraction))
    held = set(order[:n])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def sft_config(p: SftParams, ctx: StageContext):
    from trl import SFTConfig

    return SFTConfig(**training_args_kwargs(p, ctx.device, ctx.ckpt_dir, ctx.max_steps, ctx.progress,
                                            packed=p.packing),
                     max_length=p.max_length, packing=p.packing, packing_strategy="bfd",
                     completion_only_loss=None, dataset_num_proc=None)


@contextlib.contextmanager
def answer_only_scoring():
    """trl's fused LM head scores only the positions that carry a label (the answers) on
    Triton devices, and every position elsewhere - to keep tile shapes fixed for compilers such
    as Neuron's. Plain eager CPU has no such concern: scoring only the answer tokens skips the
    49k-word projection, softmax and their backward on the prompt tokens (same loss; the head
    is ~25% of a CPU step on SmolLM2-135M, whose prompts are ~40% of the tokens of a Q&A row).
    trl looks the choice up in its utils module; restored on exit so other trainers in the
    process (the bench's baseline) keep stock behaviour."""
    import trl.trainer.utils as trl_utils

    stock = getattr(trl_utils, "_use_triton", None)
    if stock is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or stock(device)
    try:
        yield
    finally:
        trl_utils._use_triton = stock


def conversation_tokens(messages: list[dict], tok) -> dict:
    """input_ids and labels of one chat, labels only on the assistant turns (each turn's content
    and end-of-turn tokens). The chat template is rendered one turn at a time; each rendering
    must extend the one before, which holds for ChatML-style templates (Qwen, SmolLM2)."""
    from assistant.errors import OnboardError

    def render(upto: int, generation_prompt: bool) -> list[int]:
        return list(tok.apply_chat_template(messages[:upto], tokenize=True, return_dict=True,
                                            add_generation_prompt=generation_prompt)["input_ids"])

    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        head, full = render(i, True), render(i + 1, False)
        if head[: len(ids)] != ids or full[: len(head)] != head:
            raise OnboardError("this model's chat template does not render a chat turn by turn; "
                               "give its sft data as prompt/completion rows")
        labels += [-100] * (len(head) - len(ids)) + full[len(head):]
        ids = full
    if not ids:
        raise OnboardError("an sft messages row has no assistant turn to train on")
    return {"input_ids": ids, "labels": labels}


def tokenized_rows(rows: list[dict], tok) -> list[dict]:
    """Every row as input_ids/labels (loss on assistant turns): used when any row is a chat."""
    return [conversation_tokens(r.get("messages") or r["prompt"] + r["completion"], tok) for r in rows]


def run_sft(model_dir: Path, data_files: list[Path], p: SftParams, ctx: StageContext) -> dict:
    """Train, merge the adapter, save to ctx.model_dir. Returns metrics for the manifest.
    ctx.extras["time_fit"] ({"limit_s", "planned_steps"}): fit the steps to the time (train/time_fit.py)."""
    from datasets import Dataset
    from trl import SFTTrainer

    begun = time.perf_counter()

    rows = load_rows(data_files, "sft", mixed=True)
    train_rows, heldout = split_holdout(rows, p.holdout, p.seed)
    if heldout:
        import json

        from assistant.files import atomic_write_text

        atomic_write_text(ctx.out_dir / "heldout.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in heldout))
    model, tok = load_model(model_dir, ctx.device, packed=p.packing)
    callback = make_progress_callback(f"sft {ctx.out_dir.name}", ctx.progress)
    time_fit = None
    if ctx.extras.get("time_fit"):
        from train.time_fit import make_time_fit

        fit = ctx.extras["time_fit"]
        time_fit = make_time_fit(fit["limit_s"], fit.get("planned_steps"), ctx.out_dir / "time-fit.json", started=begun)
    callbacks = [callback] + ([time_fit] if time_fit is not None else [])
    if any("messages" in r for r in train_rows):
        train_rows = tokenized_rows(train_rows, tok)
    trainer = SFTTrainer(model=model, args=sft_config(p, ctx), train_dataset=Dataset.from_list(train_rows),
                         processing_class=tok, peft_config=lora_config(p, model) if p.lora else None,
                         callbacks=callbacks)
    quiet_trainer(trainer)
    stop_at_epochs(trainer, p.epochs)
    resume = last_checkpoint(ctx.ckpt_dir)
    started = time.time()
    # gradient checkpointing (CUDA) needs the adapted layers' input to carry a gradient, which a
    # cached tensor does not: the cache is for the CPU path
    cache_on = p.cache_frozen_layers and p.epochs > 1 and not trainer.args.gradient_checkpointing
    with answer_only_scoring(), frozen_layer_cache(trainer.model, enabled=cache_on) as cache:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    metrics = train_metrics(trainer, result, callback, started, resume)
    metrics.update(rows=len(rows), train_rows=len(train_rows), heldout_rows=len(heldout))
    if cache.enabled:
        metrics["layer_cache"] = cache.summary()
    if time_fit is not None:
        metrics["time_fit"] = time_fit.summary()
    save_merged(trainer, tok, ctx.model_dir, ctx.device.torch_dtype)
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("LoRA SFT stage (trl SFTTrainer + peft)", "sft", lr=2e-4)
    ap.add_argument("--lora-r", type=int, default=256)
    ap.add_argument("--lora-alpha", type=int, default=512)
    ap.add_argument("--batch-size", type=int)
    args = ap.parse_args(argv)
    model_dir, ctx = stage_inputs(args)
    p = SftParams(epochs=args.epochs, lr=args.lr, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                  batch_size=args.batch_size)
    metrics = run_sft(model_dir, args.data, p, ctx)
    print(f"saved {ctx.model_dir}  loss {metrics['first_loss']} -> {metrics['final_loss']}  "
          f"{metrics['tokens_per_s']} tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
