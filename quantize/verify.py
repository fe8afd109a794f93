"""Checks on a GGUF file: what its tensors were quantized to, its header, and whether it loads,
generates and keeps its perplexity on held-out docs text (the numbers `onboard quantize` reports).

    from quantize.verify import evaluate_gguf, DEFAULT_EVAL_TEXT
    evaluate_gguf(Path("model.q4_k_m.gguf"), DEFAULT_EVAL_TEXT)   # {"ppl": ..., "tokens_per_s": ...}
"""
from __future__ import annotations

import math
import os
import time
from collections import Counter
from pathlib import Path

from assistant.errors import OnboardError
from assistant.llm.registry import check_gguf

EVAL_CTX = 512
EVAL_MAX_TOKENS = 1024
GEN_TOKENS = 16
HELDOUT_NAMES = ("heldout.txt", "eval_text.txt")  # held-out text a training run may leave beside the weights

# Fallback held-out text: generic technical-docs prose written for this project, so the check
# works with no corpus at hand. Pass real held-out docs (eval_text / --eval-text) when you have them.
DEFAULT_EVAL_TEXT = """\
# Getting started

Install the server with the package manager of your platform, then start it from a terminal. By
default it listens on port 8080 on the loopback interface only, so other machines cannot reach
it until you change the host setting. The first request loads the model into memory; later
requests reuse it, so the first answer is slower than the rest.

## Loading a model

Send a request to the load endpoint with the path of a GGUF file and the context length you
need. A longer context costs more memory: every token of context keeps keys and values for each
layer. If the machine has a GPU, set the number of layers to offload; layers that do not fit
stay on the CPU. When loading fails, the response says why: a missing file, a file that is not
a GGUF model, or not enough memory for the requested context.

## Chat completions

The chat endpoint accepts a list of messages, each with a role (system, user or assistant) and
its content. Set stream to true to receive the answer token by token as server-sent events; the
last event is [DONE]. Temperature controls randomness: use a low value for factual answers.
Stop words end the answer early when the model writes them.

## Troubleshooting

If answers are cut short, raise max_tokens. If the server runs out of memory, lower the context
length or use a smaller quantization such as Q4_K_M, which needs about a quarter of the memory
of the f16 file with a small loss in quality. Logs are written to the console by default; set
the log level to debug to see each request and its timing.
"""


def tensor_types(path: Path) -> dict:
    """What each tensor group ended up as, e.g. {"attn_q.weight": "Q5_0", ...}, plus totals.

    K-quants need rows that are a multiple of 256; llama.cpp silently falls back (Q4_K -> Q5_0,
    Q6_K -> Q8_0) on narrower tensors, so the file name alone does not say what is inside."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    groups: dict[str, set] = {}
    counts: Counter = Counter()
    params = 0
    for t in reader.tensors:
        name = t.tensor_type.name
        counts[name] += 1
        params += int(t.n_elements)
        group = ".".join(t.name.split(".")[2:]) if t.name.startswith("blk.") else t.name
        groups.setdefault(group, set()).add(name)
    return {"counts": dict(counts), "groups": {g: "/".join(sorted(v)) for g, v in sorted(groups.items())},
            "params": params}


def gguf_metadata(path: Path) -> dict:
    """Header fields of a GGUF (architecture, chat template, context length, eos token, license).

    Read by llama.cpp with vocab_only: ~0.1 s, where gguf's pure-Python reader walks the whole
    vocabulary (seconds for a 49k-token model)."""
    import llama_cpp

    from assistant.llm.chat_model import quiet_stderr

    check_gguf(path)
    try:
        with quiet_stderr():
            llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as e:
        raise OnboardError(f"cannot read {path}: {e} (truncated or unsupported GGUF?)") from None
    meta = dict(llm.metadata)
    out: dict = {k: meta[k] for k in ("general.architecture", "general.name", "general.license",
                                      "tokenizer.chat_template") if k in meta}
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id", "general.file_type"):
        if str(meta.get(key, "")).lstrip("-").isdigit():
            out[key] = int(meta[key])
    arch = out.get("general.architecture")
    if str(meta.get(f"{arch}.context_length", "")).isdigit():
        out["context_length"] = int(meta[f"{arch}.context_length"])
    eos = out.get("tokenizer.ggml.eos_token_id")
    if eos is not None and 0 <= eos < llm.n_vocab():
        out["eos_token"] = llm.detokenize([eos], special=True).decode("utf-8", errors="replace")
    del llm
    return out


def evaluate_gguf(path: Path, eval_text: str, n_threads: int | None = None, n_ctx: int = EVAL_CTX,
                  max_tokens: int = EVAL_MAX_TOKENS, gen_tokens: int = GEN_TOKENS) -> dict:
    """Load, measure perplexity on eval_text (windows of n_ctx), then generate gen_tokens greedily."""
    import llama_cpp
    import numpy as np

    from assistant.llm.chat_model import quiet_stderr

    check_gguf(path)
    try:
        with quiet_stderr():
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
                                  n_threads=n_threads or os.cpu_count(), verbose=False, seed=0)
    except (ValueError, RuntimeError, OSError) as e:
        raise OnboardError(f"{path.name} does not load in llama.cpp: {e}") from None
    tokens = llm.tokenize(eval_text.encode("utf-8"), add_bos=False)[:max_tokens]
    if len(tokens) < 16:
        raise OnboardError("held-out text is too short for a perplexity check (need 16+ tokens)")
    nll, count = 0.0, 0
    for start in range(0, len(tokens) - 1, n_ctx):
        window = tokens[start:start + n_ctx]
        if len(window) < 2:
            break
        llm.reset()
        llm.eval(window)
        logits = np.asarray(llm.scores[: len(window) - 1], dtype=np.float32)
        top = logits.max(axis=1)
        logsumexp = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        target = logits[np.arange(len(window) - 1), window[1:]]
        nll += float((logsumexp - target).sum())
        count += len(window) - 1
    ppl = math.exp(nll / count) if count else float("nan")
    # Generation: greedy tokens regardless of end-of-text (a random test model may emit it first).
    llm.reset()
    prompt = llm.tokenize(b"<|im_start|>user\nHow do I load a model?<|im_end|>\n<|im_start|>assistant\n",
                          add_bos=False, special=True)
    generated, start = [], time.perf_counter()
    for tok in llm.generate(prompt, temp=0.0):
        generated.append(tok)
        if len(generated) >= gen_tokens:
            break
    elapsed = time.perf_counter() - start
    sample = llm.detokenize(generated).decode("utf-8", errors="replace")
    del llm
    return {"ppl": ppl, "eval_tokens": count, "generated_tokens": len(generated),
            "tokens_per_s": round(len(generated) / elapsed, 2) if elapsed > 0 else 0.0, "sample": sample}


def _heldout_rows_text(path: Path) -> str:
    """The answer side of held-out SFT rows (prompt/completion or messages), one per paragraph."""
    import json

    parts = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        for key in ("completion", "answer", "text", "chosen", "messages"):
            value = row.get(key) if isinstance(row, dict) else None
            if isinstance(value, str):
                parts.append(value)
            elif isinstance(value, list):
                parts += [m["content"] for m in value if isinstance(m, dict) and m.get("role") != "user"
                          and isinstance(m.get("content"), str)]
            if value:
                break
    return "\n\n".join(p.strip() for p in parts if p.strip())


def default_eval_text(hf_dir: Path) -> tuple[str, str]:
    """(text, where it came from): held-out text left by training, else the built-in sample.

    Looked for: HF_DIR/heldout.txt or eval_text.txt; then an `onboard train` run's held-out SFT
    rows (OUT/NN-sft/heldout.jsonl when HF_DIR is OUT/NN-stage/model)."""
    hf_dir = Path(hf_dir)
    for name in HELDOUT_NAMES:
        p = hf_dir / name
        if p.is_file() and p.stat().st_size > 200:
            return p.read_text(encoding="utf-8", errors="replace"), str(p)
    for p in [hf_dir / "heldout.jsonl", hf_dir.parent / "heldout.jsonl", *sorted(hf_dir.parent.parent.glob("*/heldout.jsonl"))]:
        if p.is_file() and len(text := _heldout_rows_text(p)) > 200:
            return text, str(p)
    return DEFAULT_EVAL_TEXT, "built-in sample of technical docs prose"
