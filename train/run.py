"""Run a recipe: stages in order, each in its own folder with a manifest; skip what is done,
resume what was interrupted.

    from train.recipe import load_recipe
    from train.run import run_recipe
    final = run_recipe(load_recipe("docs-specialist"), Path("out/docs"), data_dir=Path("data/docs"))

Layout of `out_dir`:
    01-<stage>/model/          the stage's output (HF safetensors + tokenizer)
    01-<stage>/checkpoints/    Trainer checkpoints (every `save_steps`; resumed after a kill -9)
    01-<stage>/manifest.json   inputs' hashes, config, metrics (loss curve, tokens/s), time
    01-<stage>/loss.png        loss curve
    run.json                   the recipe run: stages, their status, the final model folder

A stage is skipped when its manifest says complete and the key over (stage config, effective step
cap, input model hashes, data hashes) is unchanged. A stage whose folder holds checkpoints for
the same key resumes from the newest complete one; a changed key starts that stage afresh.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Callable

from assistant.errors import OnboardError
from assistant.files import atomic_write_text, sha256_file
from train.recipe import BASE, PREVIOUS, Recipe, Stage, load_recipe

QUICK_STEPS = 5  # --quick: a smoke run of every stage, a few optimizer steps each
MANIFEST = "manifest.json"


def dir_fingerprint(path: Path) -> str:
    """sha256 over a model folder's files (names + contents). Our own stage outputs carry it in
    their manifest, so big folders are hashed once, when they are written."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


class _Inputs:
    """Resolves model references and remembers their hashes."""

    def __init__(self, recipe: Recipe, settings, base: str | None, aliases: dict[str, str]):
        self.recipe, self.settings = recipe, settings
        self.base = base or recipe.base
        self.aliases = {**recipe.models, **aliases}
        self.outputs: dict[str, tuple[Path, str]] = {}  # stage name -> (model dir, hash)
        self.previous: str | None = None
        self._hashes: dict[Path, str] = {}

    def resolve(self, ref: str) -> tuple[Path, str]:
        from train.base import gguf_sha, hf_model_dir

        if ref == PREVIOUS:
            return self.outputs[self.previous]
        if ref in self.outputs:
            return self.outputs[ref]
        target = self.base if ref == BASE else self.aliases.get(ref, ref)
        path = hf_model_dir(target, self.settings)
        if path not in self._hashes:
            src = path / "onboard-source.json"  # a cached GGUF conversion: the GGUF's hash says it all
            if src.is_file():
                self._hashes[path] = "gguf:" + gguf_sha(Path(json.loads(src.read_text())["gguf"]), self.settings)
            else:
                self._hashes[path] = dir_fingerprint(path)
        return path, self._hashes[path]


def _data_files(stage: Stage, data_dir: Path | None) -> list[Path]:
    files = []
    for name in stage.data:
        path = Path(name).expanduser()
        if not path.is_absolute():
            if data_dir is None:
                raise OnboardError(f"stage {stage.name!r} needs {name} but no data folder was given; "
                                   "pass --data DIR (the --out folder of `onboard synth`)")
            path = data_dir / path
        if not path.is_file():
            raise OnboardError(f"stage {stage.name!r}: data file {path} not found "
                               "(create it with `onboard synth`, or fix `data:` in the recipe)")
        files.append(path)
    return files


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "mergekit"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run_recipe(recipe: Recipe | str | os.PathLike, out_dir: Path, *, data_dir: Path | None = None,
               base: str | None = None, quick: bool = False, max_steps: int | None = None,
               settings=None, progress: bool = True, models: dict[str, str] | None = None,
               scorer: Callable[[Path], float] | None = None, time_fit: dict | None = None) -> Path:
    """Run every stage (skipping/resuming as above); returns the final HF model folder.

    models: overrides of the recipe's model aliases (e.g. {"partner": "path/to/hf-dir"}).
    scorer: `fn(model_dir) -> float` (higher is better) for merge stages that sweep `t`.
    time_fit: {"limit_s", "planned_steps"} for the first sft stage, which then trains the steps
    that fit in `limit_s` seconds (train/time_fit.py; a --budget build's refit gives it).
    """
    from assistant.settings import load_settings
    from train.common import detect_device, read_jsonl

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    settings = settings or load_settings()
    out_dir = Path(out_dir).expanduser()
    data_dir = _data_dir(recipe, data_dir)
    max_steps = _step_cap(quick, max_steps)
    # Check every stage's data and model before spending minutes on the first one.
    stage_data = {s.name: _data_files(s, data_dir) for s in recipe.stages}
    _check_model_refs(recipe, models or {}, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = detect_device(None)
    inputs = _Inputs(recipe, settings, base, models or {})
    say = _printer(progress)
    say(f"[bold]onboard train[/] {recipe.name}: {len(recipe.stages)} stage(s) on {device.kind} "
        f"({device.dtype}) -> {out_dir}")
    heldout: list[dict] = []
    summary = []
    timed = next((s.name for s in recipe.stages if s.type == "sft"), None) if time_fit else None
    for i, stage in enumerate(recipe.stages, 1):
        stage_dir = out_dir / f"{i:02d}-{stage.name}"
        refs = stage.models or [stage.model]
        resolved = [inputs.resolve(r) for r in refs]
        data_files = stage_data[stage.name]
        key = _key({"config": stage.config(), "max_steps": max_steps, "inputs": [h for _, h in resolved],
                    "data": [sha256_file(f) for f in data_files], "quick": quick})
        manifest = _read_json(stage_dir / MANIFEST)
        model_dir = stage_dir / "model"
        if manifest and manifest.get("status") == "complete" and manifest.get("key") == key \
                and (model_dir / "config.json").is_file():
            say(f"[green]✓[/] stage {i} {stage.name} ({stage.type}): done earlier, inputs unchanged - skipped")
        else:
            from train.common import StageContext

            extras = {"heldout_rows": heldout, **({"time_fit": time_fit} if stage.name == timed else {})}
            ctx = StageContext(out_dir=stage_dir, device=device, max_steps=max_steps, progress=progress,
                               settings=settings, extras=extras)
            manifest = _train_stage(recipe, i, stage, key, list(zip(refs, resolved)), data_files, ctx,
                                    scorer, data_dir, say)
        inputs.outputs[stage.name] = (model_dir, manifest["output"]["sha256"])
        inputs.previous = stage.name
        if (stage_dir / "heldout.jsonl").is_file():
            heldout = read_jsonl(stage_dir / "heldout.jsonl", "sft")
        summary.append({"stage": stage.name, "type": stage.type, "dir": str(stage_dir),
                        "metrics": {k: v for k, v in manifest["metrics"].items() if k not in ("loss_curve", "sweep")}})
    final = out_dir / f"{len(recipe.stages):02d}-{recipe.stages[-1].name}" / "model"
    atomic_write_text(out_dir / "run.json", json.dumps(
        {"recipe": recipe.name, "source": str(recipe.source), "final_model": str(final), "stages": summary},
        indent=2, default=str))
    say(f"[bold green]done[/]: {final}")
    return final


def _data_dir(recipe: Recipe, data_dir: Path | None) -> Path | None:
    """The given data folder, else the recipe's `data:`, else none."""
    data_dir = Path(data_dir).expanduser() if data_dir else (Path(recipe.data).expanduser() if recipe.data else None)
    if data_dir is not None and not data_dir.is_dir():
        raise OnboardError(f"data folder not found: {data_dir}")
    return data_dir


def _step_cap(quick: bool, max_steps: int | None) -> int | None:
    if quick:
        max_steps = min(max_steps or QUICK_STEPS, QUICK_STEPS)
    if max_steps is not None and max_steps <= 0:
        raise OnboardError("--max-steps must be positive")
    return max_steps


def _check_model_refs(recipe: Recipe, aliases: dict[str, str], settings) -> None:
    """An unknown model name fails with one clear line now, not at stage 3."""
    stage_names = {x.name for x in recipe.stages}
    for s in recipe.stages:
        for ref in s.models or [s.model]:
            if ref not in (PREVIOUS, BASE) and ref not in stage_names \
                    and ref not in {**recipe.models, **aliases} and not Path(ref).expanduser().exists():
                from assistant.llm.registry import resolve_model

                resolve_model(ref, settings)


def _train_stage(recipe: Recipe, i: int, stage: Stage, key: str, resolved: list[tuple[str, tuple[Path, str]]],
                 data_files: list[Path], ctx, scorer, data_dir: Path | None, say) -> dict:
    """Run one stage in ctx.out_dir (resuming its checkpoints when they were made for `key`,
    else from scratch) and write its manifest; returns the manifest."""
    from train.common import last_checkpoint, loss_chart

    stage_dir, model_dir = ctx.out_dir, ctx.out_dir / "model"
    started_run = _read_json(stage_dir / "run-key.json")
    if stage_dir.exists() and (not started_run or started_run.get("key") != key):
        shutil.rmtree(stage_dir)  # stale: other inputs/config; its checkpoints don't apply
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stage_dir / "run-key.json", json.dumps({"key": key}))
    (stage_dir / MANIFEST).unlink(missing_ok=True)
    ckpt = last_checkpoint(stage_dir / "checkpoints")
    say(f"[bold cyan]▶[/] stage {i} {stage.name} ({stage.type})"
        + (f": resuming from {ckpt.name}" if ckpt else ""))
    t0 = time.time()
    metrics = _run_stage(stage, [p for _, (p, _) in resolved], data_files, ctx, scorer, data_dir)
    elapsed = time.time() - t0
    chart = loss_chart(metrics.get("loss_curve") or [], stage_dir / "loss.png",
                       f"{recipe.name} / {stage.name} ({stage.type})")
    device = ctx.device
    manifest = {
        "status": "complete", "key": key, "recipe": recipe.name, "stage": stage.name,
        "type": stage.type, "index": i, "config": stage.config(), "max_steps_cap": ctx.max_steps,
        "inputs": {"models": [{"ref": r, "path": str(p), "sha256": h} for r, (p, h) in resolved],
                   "data": [{"path": str(f), "sha256": sha256_file(f)} for f in data_files]},
        "output": {"model_dir": str(model_dir), "sha256": dir_fingerprint(model_dir)},
        "metrics": metrics, "loss_chart": str(chart) if chart else None,
        "device": {"kind": device.kind, "dtype": device.dtype, "threads": device.threads},
        "versions": _versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0)),
        "time_s": round(elapsed, 2),
    }
    atomic_write_text(stage_dir / MANIFEST, json.dumps(manifest, indent=2, default=str))
    shutil.rmtree(stage_dir / "checkpoints", ignore_errors=True)  # done: the model is the output
    say(f"[green]✓[/] stage {i} {stage.name}: {_brief(metrics)} in {elapsed:.0f}s")
    return manifest


def _run_stage(stage: Stage, models: list[Path], data_files: list[Path], ctx, scorer, data_dir) -> dict:
    if stage.type == "sft":
        from train.sft import run_sft

        return run_sft(models[0], data_files, stage.params, ctx)
    if stage.type == "dpo":
        from train.dpo import run_dpo

        return run_dpo(models[0], data_files, stage.params, ctx)
    from train.common import read_jsonl
    from train.merge import run_merge_stage

    if stage.params.sweep and not ctx.extras.get("heldout_rows") and data_dir is not None \
            and (data_dir / "sft.jsonl").is_file():
        # No sft stage held rows out: score on the last rows of the domain data instead.
        ctx.extras["heldout_rows"] = read_jsonl(data_dir / "sft.jsonl", "sft")[-stage.params.eval_rows:]
    return run_merge_stage(models[0], models[1], stage.params, ctx, scorer=scorer)


def _brief(metrics: dict) -> str:
    parts = []
    if metrics.get("first_loss") is not None:
        parts.append(f"loss {metrics['first_loss']:.3f} → {metrics['final_loss']:.3f}")
    if metrics.get("tokens_per_s"):
        parts.append(f"{metrics['tokens_per_s']:.0f} tokens/s")
    if "t" in metrics:
        parts.append(f"t={metrics['t']}")
    if (metrics.get("time_fit") or {}).get("steps"):
        tf = metrics["time_fit"]
        parts.append(f"time fit: {tf['steps']} of {tf['of']} steps ({tf['epochs']} epochs)")
    return ", ".join(parts) or "ok"


def _printer(enabled: bool):
    if not enabled:
        return lambda msg: None
    from rich.console import Console

    console = Console(stderr=True)
    return console.print
