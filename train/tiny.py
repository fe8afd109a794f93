"""Tiny random causal LMs for fast, real training/conversion tests and benches.

`make_tiny_llama(dir)` saves a LlamaForCausalLM (hidden 64, 2 layers, ~3M params) with the real
SmolLM2 tokenizer, read from the default model's GGUF, so chat templates and tokenization are
the production ones while a training step takes milliseconds.
"""
from __future__ import annotations

from pathlib import Path


def smollm2_tokenizer(cache_dir: Path | None = None):
    """The SmolLM2-135M-Instruct tokenizer, loaded offline from the packaged GGUF."""
    from transformers import AutoTokenizer

    from assistant.models import resolve_model
    from assistant.settings import load_settings

    gguf = resolve_model("smollm2-135m", load_settings())
    if cache_dir is not None and (cache_dir / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(cache_dir)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if cache_dir is not None:
        tok.save_pretrained(cache_dir)
    return tok


def make_tiny_llama(out_dir: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return out_dir
    tok = smollm2_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out_dir)
    return out_dir
