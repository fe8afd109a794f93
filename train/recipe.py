"""Training recipes: an ordered list of `merge` / `dpo` / `sft` stages, loaded from YAML and checked.

    from train.recipe import load_recipe
    recipe = load_recipe("docs-specialist")        # models/recipes/docs-specialist.yaml
    recipe = load_recipe("path/to/my-recipe.yaml")

A bare name is looked up in $ONBOARD_HOME/recipes/NAME.yaml first, then in the recipes shipped
in the repository (models/recipes/NAME.yaml, located from this file; onboard is installed in
editable mode by `make install`). Every mistake a user can make in a recipe (unknown stage type,
unknown key, wrong value type, a merge without two models...) raises OnboardError with one line
that names the file, the stage and the fix. See docs/training.md for the full schema.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from assistant.errors import OnboardError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "models" / "recipes"
STAGE_TYPES = ("merge", "dpo", "sft")
# Model references with a meaning inside a recipe; anything else is a recipe alias (see
# Recipe.models), a registry name, a .gguf path or a Hugging Face model folder.
PREVIOUS, BASE = "previous", "base"


@dataclass
class TrainParams:
    """Hyper-parameters shared by the trainer stages (sft, dpo). None = chosen per device."""

    epochs: float = 1.0
    max_steps: int | None = None  # caps the run; --max-steps / --quick lower it further
    lr: float = 2e-4
    batch_size: int | None = None  # per device; None: CPU 4 rows, or 1 packed 1024-token row (~8 Q&A pairs); CUDA 16
    grad_accum: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    lora: bool = True
    lora_r: int = 256
    lora_alpha: int = 512
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    lora_layers: int | None = None  # adapt only the top N layers (None: all); see train.common.lora_config
    gradient_checkpointing: bool | None = None  # None: on for CUDA, off on CPU (memory is not short there)
    save_steps: int = 50  # checkpoint interval: how much work a kill -9 can lose
    seed: int = 0


@dataclass
class SftParams(TrainParams):
    packing: bool = True  # best-fit packing, padding-free: no compute spent on pad tokens
    holdout: float = 0.0  # fraction of rows kept out of training (written to heldout.jsonl)
    cache_frozen_layers: bool = True  # with lora_layers: reuse the frozen layers' output from epoch 2 (train/layer_cache.py)


@dataclass
class DpoParams(TrainParams):
    lr: float = 5e-5
    beta: float = 0.1
    lora_r: int = 64
    lora_alpha: int = 128
    loss_type: str = "sigmoid"


@dataclass
class MergeParams:
    # SLERP factor toward the SECOND model (0 = first model, 1 = second). A number, a list of
    # numbers (a gradient interpolated over the layers), or a mapping of tensor filter -> number or
    # list, e.g. {self_attn: [0, 0.5, 1], mlp: [1, 0.5, 0], default: 0.5}.
    t: Any = 0.5
    sweep: list[float] | None = None  # candidate scalar t values; best by the sweep scorer wins
    score: str | None = None  # "module:function" scorer for the sweep (see train/merge.py)
    eval_rows: int = 32  # held-out rows the default scorer reads
    dtype: str = "float32"


PARAMS_FOR = {"sft": SftParams, "dpo": DpoParams, "merge": MergeParams}
DATA_DEFAULT = {"sft": ["sft.jsonl"], "dpo": ["dpo.jsonl"], "merge": []}


@dataclass
class Stage:
    name: str
    type: str
    model: str = PREVIOUS  # input of sft / dpo
    models: list[str] = field(default_factory=list)  # the two inputs of merge
    data: list[str] = field(default_factory=list)  # files, relative to the data folder
    params: Any = None  # SftParams | DpoParams | MergeParams

    def config(self) -> dict:
        return {"name": self.name, "type": self.type, "model": self.model, "models": self.models,
                "data": self.data, "params": dataclasses.asdict(self.params)}


@dataclass
class Recipe:
    name: str
    stages: list[Stage]
    description: str = ""
    base: str = "smollm2-135m"  # what the reference `base` means; --base overrides it
    models: dict[str, str] = field(default_factory=dict)  # aliases, e.g. partner: path/to/model
    data: str | None = None  # default data folder; --data overrides it
    source: Path | None = None

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


def _fail(where: str, msg: str) -> OnboardError:
    return OnboardError(f"recipe {where}: {msg}")


def _coerce_param(where: str, f: dataclasses.Field, value: Any) -> Any:
    kind = str(f.type)
    if value is None:
        if "None" in kind:
            return None
        raise _fail(where, f"{f.name} cannot be empty")
    try:
        if kind.startswith("bool"):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind.startswith("int"):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)  # YAML reads 2e-4 as a string: float() accepts it
        if kind.startswith("list[float]"):
            if not isinstance(value, list) or not value:
                raise ValueError
            return [float(v) for v in value]
        if kind.startswith("str |") or kind == "str":
            if isinstance(value, list) and "list" in kind:
                return [str(v) for v in value]
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise _fail(where, f"{f.name}: {value!r} is not a valid {kind}") from None
    return value


def _check_t(where: str, t: Any) -> Any:
    def number(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise _fail(where, f"t: {v!r} is not a number between 0 and 1")
        return float(v)

    if isinstance(t, list):
        if not t:
            raise _fail(where, "t: empty list")
        return [number(v) for v in t]
    if isinstance(t, dict):
        out = {}
        for key, value in t.items():
            out[str(key)] = [number(v) for v in value] if isinstance(value, list) else number(value)
        return out
    return number(t)


def _parse_params(where: str, kind: str, raw: dict) -> Any:
    cls = PARAMS_FOR[kind]
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)} for a {kind} stage; "
                           f"known: {', '.join(sorted(known))}")
    values = {k: _coerce_param(where, known[k], v) for k, v in raw.items()}
    params = cls(**values)
    if kind == "merge":
        params.t = _check_t(where, params.t)
        if params.sweep is not None:
            params.sweep = [_check_t(where, v) for v in params.sweep]
        if params.score is not None and ":" not in params.score:
            raise _fail(where, f"score: {params.score!r} must look like 'package.module:function'")
        if params.dtype not in ("float32", "bfloat16", "float16"):
            raise _fail(where, f"dtype: {params.dtype!r}; use float32, bfloat16 or float16")
    else:
        for name in ("epochs", "lr", "max_length", "lora_r", "lora_alpha", "grad_accum", "save_steps"):
            if getattr(params, name) <= 0:
                raise _fail(where, f"{name} must be positive (got {getattr(params, name)})")
        if params.max_steps is not None and params.max_steps <= 0:
            raise _fail(where, f"max_steps must be positive (got {params.max_steps})")
        if kind == "sft" and not 0.0 <= params.holdout < 0.5:
            raise _fail(where, f"holdout must be in [0, 0.5) (got {params.holdout})")
    return params


STAGE_KEYS = {"name", "type", "model", "models", "data", "params"}


def _parse_stage(src: str, index: int, raw: Any, names: set[str]) -> Stage:
    where = f"{src}, stage {index + 1}"
    if not isinstance(raw, dict):
        raise _fail(where, "each stage must be a mapping with at least `type:`")
    kind = raw.get("type")
    if kind not in STAGE_TYPES:
        raise _fail(where, f"unknown stage type {kind!r}; use one of: {', '.join(STAGE_TYPES)}")
    name = str(raw.get("name") or kind)
    where = f"{src}, stage {name!r}"
    if name in names:
        raise _fail(where, "duplicate stage name; give each stage a unique `name:`")
    if name in (PREVIOUS, BASE) or "/" in name or name.startswith("."):
        raise _fail(where, f"{name!r} cannot be a stage name")
    # Hyper-parameters may sit under `params:` or directly in the stage mapping.
    flat = {k: v for k, v in raw.items() if k not in STAGE_KEYS}
    nested = raw.get("params") or {}
    if not isinstance(nested, dict):
        raise _fail(where, "params: must be a mapping")
    params = _parse_params(where, kind, {**flat, **nested})
    data = raw.get("data", DATA_DEFAULT[kind])
    data = [data] if isinstance(data, str) else data
    if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
        raise _fail(where, "data: give a file name or a list of file names")
    if kind != "merge" and not data:
        raise _fail(where, f"a {kind} stage needs data: (e.g. {DATA_DEFAULT[kind][0]})")
    stage = Stage(name=name, type=kind, data=list(data), params=params)
    if kind == "merge":
        models = raw.get("models")
        if not isinstance(models, list) or len(models) != 2 or not all(isinstance(m, str) for m in models):
            raise _fail(where, "a merge stage needs `models:` with exactly two entries, e.g. [base, previous]")
        stage.models = list(models)
        if "model" in raw:
            raise _fail(where, "a merge stage takes `models:` (two), not `model:`")
    else:
        model = raw.get("model", PREVIOUS if index else BASE)
        if not isinstance(model, str) or not model:
            raise _fail(where, "model: give a model reference (base, previous, a stage name, a path)")
        stage.model = model
    for ref in stage.models or [stage.model]:
        if ref == PREVIOUS and index == 0:
            raise _fail(where, "the first stage has no `previous` stage; use `base` or a model")
    return stage


def parse_recipe(data: Any, source: str = "<recipe>") -> Recipe:
    if not isinstance(data, dict):
        raise _fail(source, "expected a mapping with `name:` and `stages:`")
    unknown = sorted(set(data) - {"name", "description", "base", "models", "data", "stages"})
    if unknown:
        raise _fail(source, f"unknown top-level key(s) {', '.join(unknown)}; "
                            "known: name, description, base, models, data, stages")
    stages_raw = data.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise _fail(source, "`stages:` must be a non-empty list of merge / dpo / sft stages")
    aliases = data.get("models") or {}
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise _fail(source, "`models:` must map alias names to model references")
    stages: list[Stage] = []
    for i, raw in enumerate(stages_raw):
        stages.append(_parse_stage(source, i, raw, {s.name for s in stages}))
    for i, stage in enumerate(stages):
        later = {s.name for s in stages[i:]}
        for ref in stage.models or [stage.model]:
            if ref in later:
                raise _fail(f"{source}, stage {stage.name!r}", f"{ref!r} is not an earlier stage")
    name = str(data.get("name") or Path(source).stem)
    return Recipe(name=name, stages=stages, description=str(data.get("description") or ""),
                  base=str(data.get("base") or "smollm2-135m"), models={str(k): v for k, v in aliases.items()},
                  data=data.get("data"), source=Path(source) if source != "<recipe>" else None)


def recipe_path(path_or_name: str | os.PathLike) -> Path:
    """A recipe file path, or a bare name looked up in $ONBOARD_HOME/recipes and models/recipes."""
    key = str(path_or_name)
    path = Path(key).expanduser()
    if path.suffix in (".yaml", ".yml") or os.sep in key:
        if not path.is_file():
            raise OnboardError(f"recipe file not found: {path}")
        return path
    from assistant.settings import load_settings

    for folder in (load_settings().home / "recipes", RECIPES_DIR):
        for ext in (".yaml", ".yml"):
            if (folder / f"{key}{ext}").is_file():
                return folder / f"{key}{ext}"
    raise OnboardError(f"unknown recipe {key!r}; shipped recipes: {', '.join(list_recipes()) or 'none'} "
                       "(or pass a .yaml path)")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(path_or_name: str | os.PathLike) -> Recipe:
    import yaml

    path = recipe_path(path_or_name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise OnboardError(f"recipe {path}: not valid YAML{at}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise OnboardError(f"cannot read recipe {path}: {e}") from None
    return parse_recipe(data, str(path))
