"""Merge stage: SLERP of two same-architecture checkpoints with mergekit, optionally sweeping `t`.

Run as part of a recipe (`onboard train RECIPE`), or on its own:

```bash
python -m train.merge --models out/base-hf out/dpo/model --out out/merge --t 0.5
python -m train.merge --models A B --out out/merge --t 0 0.5 1      # gradient over the layers
python -m train.merge --models A B --out out/merge --sweep 0.3 0.5 0.7 --eval-data data/sft.jsonl
```

`t` is the SLERP factor toward the second model (0 = first, 1 = second): a number, a list of
numbers interpolated over the layers, or a mapping of tensor-name filter -> value, e.g.
`{self_attn: [0, 0.5, 1], mlp: [1, 0.5, 0], default: 0.5}` (mergekit's per-layer schedules).

Sweep hook: with `sweep: [t1, t2, ...]` every candidate is merged and scored, the best is kept.
The scorer is any callable `scorer(model_dir: Path) -> float` (higher is better), given either
as `run_recipe(..., scorer=fn)` or in the recipe as `score: "package.module:function"`, where the
function has the same signature. The default (`LossScorer`) is
    score = -( domain_loss / domain_loss(first model) + general_loss / general_loss(first model) ) / 2
with domain_loss = completion loss on held-out SFT rows (an sft stage's heldout.jsonl, else the
last `eval_rows` rows of the data) and general_loss = LM loss on a short general-English text:
it rewards learning the docs and penalises forgetting general language. The evaluation module can
plug in MCQ accuracy instead (e.g. `score: assistant.eval_score:mcq_scorer`).
"""
from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

from assistant.errors import OnboardError
from train.base import model_signature
from train.common import StageContext
from train.recipe import MergeParams

Scorer = Callable[[Path], float]

GENERAL_TEXT = (
    "The city library opens at nine in the morning and closes at six in the evening. Visitors can "
    "borrow up to five books at a time and keep them for three weeks. Water boils at one hundred "
    "degrees Celsius at sea level, and it freezes at zero. A week has seven days, and a year usually "
    "has three hundred and sixty-five. When it rains, people carry umbrellas and wear coats. The "
    "children walked to school together, talking about the football match they had watched the "
    "night before. Cooking rice is simple: rinse it, add twice as much water, bring it to a boil, "
    "then let it simmer under a lid for about fifteen minutes. Trains leave the central station "
    "every half hour, and the journey to the coast takes a little over two hours."
)


def slerp_config(first: Path, second: Path, t, dtype: str, layers: int) -> dict:
    if isinstance(t, dict):
        t_param = [{"filter": k, "value": v} for k, v in t.items() if k != "default"]
        t_param.append({"value": t.get("default", 0.5)})
    else:
        t_param = t
    return {
        "merge_method": "slerp",
        "base_model": str(first),
        "slices": [{"sources": [{"model": str(first), "layer_range": [0, layers]},
                                {"model": str(second), "layer_range": [0, layers]}]}],
        "parameters": {"t": t_param},
        "dtype": dtype,
    }


def check_mergeable(first: Path, second: Path) -> int:
    a, b = model_signature(first), model_signature(second)
    diff = [f"{k}: {a[k]} vs {b[k]}" for k in a if a[k] != b[k]]
    if diff:
        raise OnboardError(f"cannot merge {first} with {second}: different architectures "
                           f"({'; '.join(diff)}); SLERP needs two checkpoints of the same model")
    return int(a["num_hidden_layers"])


def slerp(first: Path, second: Path, out: Path, t, dtype: str = "float32", device: str = "cpu") -> Path:
    """Merge into `out` (atomically: a temp folder renamed into place)."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    layers = check_mergeable(first, second)
    cfg = slerp_config(first, second, t, dtype, layers)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    run_merge(MergeConfiguration.model_validate(cfg), str(tmp),
              options=MergeOptions(device=device, copy_tokenizer=True, lazy_unpickle=True, quiet=True,
                                   write_model_card=False))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


# --- sweep scoring -------------------------------------------------------------------------------
class LossScorer:
    """Default sweep score: domain held-out loss vs general-text loss, relative to a reference."""

    def __init__(self, domain_rows: list[dict], reference: Path, general_text: str = GENERAL_TEXT,
                 max_rows: int = 32):
        self.domain_rows = domain_rows[:max_rows]
        self.general_text = general_text
        self.details: dict[str, dict] = {}
        self.ref = self.losses(reference)

    def losses(self, model_dir: Path) -> dict:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for row in self.domain_rows:
                prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
                full = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
                p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
                ids = tok(full, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :1024]
                labels = ids.clone()
                labels[:, :len(p_ids)] = -100  # completion only, as the sft stage trains
                n = int((labels[:, 1:] != -100).sum())
                if n:
                    total += float(model(input_ids=ids, labels=labels).loss) * n
                    count += n
            g = tok(self.general_text, return_tensors="pt")["input_ids"]
            general = float(model(input_ids=g, labels=g).loss)
        return {"domain_loss": total / max(count, 1), "general_loss": general}

    def __call__(self, model_dir: Path) -> float:
        got = self.losses(model_dir)
        rel = (got["domain_loss"] / self.ref["domain_loss"] + got["general_loss"] / self.ref["general_loss"]) / 2
        self.details[str(model_dir)] = {**got, "relative_loss": rel}
        return -rel


def import_scorer(spec: str) -> Scorer:
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise OnboardError(f"merge score {spec!r} cannot be imported ({e})") from None
    if not callable(fn):
        raise OnboardError(f"merge score {spec!r} is not callable")
    return fn


def run_merge_stage(first: Path, second: Path, p: MergeParams, ctx: StageContext,
                    scorer: Scorer | None = None) -> dict:
    """Merge (or sweep and keep the best) into ctx.model_dir. Returns metrics for the manifest."""
    started = time.time()
    device = "cuda" if ctx.device.kind == "cuda" else "cpu"
    if not p.sweep:
        slerp(first, second, ctx.model_dir, p.t, p.dtype, device)
        return {"t": p.t, "time_s": round(time.time() - started, 2)}
    if scorer is None and p.score:
        scorer = import_scorer(p.score)
    if scorer is None:
        rows = ctx.extras.get("heldout_rows") or []
        if not rows:
            raise OnboardError("merge sweep needs held-out SFT rows for its default scorer: give an sft "
                               "stage `holdout: 0.1`, or set `score:` to your own scorer")
        scorer = LossScorer(rows, reference=first, max_rows=p.eval_rows)
    candidates = []
    sweep_dir = ctx.out_dir / "sweep"
    for t in p.sweep:
        cand = sweep_dir / f"t{t}"
        slerp(first, second, cand, t, p.dtype, device)
        score = float(scorer(cand))
        entry = {"t": t, "score": score}
        entry.update(getattr(scorer, "details", {}).get(str(cand), {}))
        candidates.append(entry)
        if ctx.progress:
            from rich import print as rprint

            rprint(f"  merge sweep t={t}: score {score:.4f}")
    best = max(candidates, key=lambda c: c["score"])
    shutil.rmtree(ctx.model_dir, ignore_errors=True)
    (sweep_dir / f"t{best['t']}").rename(ctx.model_dir)
    shutil.rmtree(sweep_dir, ignore_errors=True)  # candidates are full models: don't keep them
    reference = getattr(scorer, "ref", None)
    return {"t": best["t"], "sweep": candidates, "reference_losses": reference,
            "time_s": round(time.time() - started, 2)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="SLERP merge stage (mergekit)")
    ap.add_argument("--models", nargs=2, required=True, help="two registry names, .gguf or HF folders")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--t", nargs="+", type=float, default=[0.5], help="t, or one t per layer group")
    ap.add_argument("--sweep", nargs="+", type=float, help="candidate t values to score")
    ap.add_argument("--eval-data", type=Path, help="sft.jsonl whose last rows the default scorer uses")
    args = ap.parse_args(argv)
    from assistant.settings import load_settings
    from train.base import hf_model_dir
    from train.common import detect_device, read_jsonl

    settings = load_settings()
    first, second = (hf_model_dir(m, settings) for m in args.models)
    p = MergeParams(t=args.t[0] if len(args.t) == 1 else args.t, sweep=args.sweep)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(out_dir=args.out, device=detect_device(), settings=settings)
    if args.eval_data:
        ctx.extras["heldout_rows"] = read_jsonl(args.eval_data, "sft")[-p.eval_rows:]
    metrics = run_merge_stage(first, second, p, ctx)
    print(json.dumps({"model": str(ctx.model_dir), **metrics}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
