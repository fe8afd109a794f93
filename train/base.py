"""Turn a model reference into a Hugging Face model folder (safetensors + tokenizer) for training.

    from train.base import hf_model_dir
    path = hf_model_dir("smollm2-135m", settings)   # registry GGUF -> cached HF folder
    path = hf_model_dir("some/model.gguf", settings)
    path = hf_model_dir("some/hf-folder", settings)  # used in place

Registry models are GGUF files (onboard never downloads from a model hub), so the weights are
dequantized once with `GgufConfig(dequantize=True)` - without it transformers keeps quantized
tensors that can be neither saved nor fully trained - and saved as float32 safetensors under
$ONBOARD_HOME/cache/hf/<name>-<sha12>/. The folder appears atomically (built in a temp folder,
renamed into place), so an interrupted conversion is redone, never half-used. SmolLM2-135M takes
~25 s and 1.5 GB of RAM the first time and is instant afterwards.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from assistant.errors import OnboardError
from assistant.files import sha256_file
from assistant.llm.registry import resolve_model
from assistant.settings import Settings


def gguf_to_hf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF into an HF folder, atomically. Returns out_dir."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True))
    except Exception as e:  # transformers raises many types for unsupported GGUFs
        shutil.rmtree(tmp, ignore_errors=True)
        raise OnboardError(f"cannot load {gguf.name} into transformers ({type(e).__name__}: {e}); "
                           "train from an HF model folder instead") from None
    # A plain float32 model: the quantization marker would make peft/trl refuse full training.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "onboard-source.json").write_text(json.dumps({"gguf": str(gguf)}), encoding="utf-8")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def _gguf_key(gguf: Path) -> str:
    # Hashing a 100 MB-1 GB file each run is slow: memo by (size, mtime) next to the cache.
    st = gguf.stat()
    return f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def gguf_sha(gguf: Path, settings: Settings) -> str:
    memo_file = settings.cache_dir / "hf" / "gguf-sha256.json"
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    key = _gguf_key(gguf)
    if key not in memo:
        memo[key] = sha256_file(gguf)
        from assistant.files import atomic_write_text

        atomic_write_text(memo_file, json.dumps(memo, indent=1))
    return memo[key]


def hf_model_dir(ref: str | os.PathLike, settings: Settings) -> Path:
    """Registry name, .gguf path or HF folder -> HF folder on disk (converted and cached once)."""
    key = str(ref)
    path = Path(key).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise OnboardError(f"{path} is a folder but not a Hugging Face model (no config.json)")
        return path
    gguf = resolve_model(key, settings)  # clear OnboardError for unknown names / bad files
    sha = gguf_sha(gguf, settings)
    stem = key if "/" not in key and not key.endswith(".gguf") else gguf.stem
    out = settings.cache_dir / "hf" / f"{stem}-{sha[:12]}"
    if (out / "config.json").is_file():
        return out
    return gguf_to_hf(gguf, out)


def model_signature(path: Path) -> dict:
    """The fields that must agree for two checkpoints to be merged tensor by tensor."""
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OnboardError(f"cannot read {path / 'config.json'}: {e}") from None
    keys = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size",
            "num_attention_heads", "num_key_value_heads", "vocab_size")
    return {k: cfg.get(k) for k in keys}
