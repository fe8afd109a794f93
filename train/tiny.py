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

    from assistant.llm.registry import resolve_model
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


# --- tiny datasets in the formats `onboard synth` writes (sft.jsonl, dpo.jsonl) ------------------
_FACTS = [
    ("Which port does the server listen on by default?", "It listens on port 3928."),
    ("How do I start the server?", "Run `onboard serve` in a terminal."),
    ("Where are models stored?", "Under $ONBOARD_HOME/models, one folder per model."),
    ("How do I load a model?", "Send a POST request to /inferences/llamacpp/loadmodel."),
    ("Which file format do models use?", "Models are GGUF files."),
    ("How do I stop the server?", "Press Ctrl+C or call the /destroy endpoint."),
    ("What does ngl control?", "ngl sets how many layers are offloaded to the GPU."),
    ("How do I change the context size?", "Pass ctx_len when loading the model."),
    ("Is a GPU required?", "No, it runs on a CPU; a GPU is optional."),
    ("What license does the project use?", "It is released under the AGPLv3 license."),
    ("How do I enable embeddings?", "Set embedding to true when loading the model."),
    ("Which API does the chat endpoint follow?", "It follows the OpenAI chat completions API."),
]


def tiny_rows(n: int = 24) -> tuple[list[dict], list[dict]]:
    """(sft rows, dpo rows) about a fictional server: short, fixed, learnable in a few steps."""
    sft, dpo = [], []
    for i in range(n):
        q, a = _FACTS[i % len(_FACTS)]
        if i >= len(_FACTS):
            q = "Please tell me: " + q[0].lower() + q[1:]
        prompt = [{"role": "user", "content": q}]
        sft.append({"prompt": prompt, "completion": [{"role": "assistant", "content": a}]})
        dpo.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": a}],
                    "rejected": [{"role": "assistant", "content": "I am not sure, maybe check online."}]})
    return sft, dpo


def reading_rows(n: int, tokens: int) -> list[dict]:
    """n sft rows shaped like retrieval-reading rows: ~`tokens` tokens of documents in the prompt
    and a one-letter answer. What such a row costs to train differs from a short Q&A row's: almost
    no token reaches the LM head's loss (train.budget measures the training speed on these)."""
    docs = " ".join(f"{q} {a}" for q, a in _FACTS)
    chars = int(tokens * 3.6)  # English prose: ~4 characters a token, so this stays under `tokens`
    body = ((docs + " ") * (chars // len(docs) + 1))[:chars]
    rows = []
    for i in range(n):
        q, _ = _FACTS[i % len(_FACTS)]
        prompt = [{"role": "user", "content": f"Documents:\n{body}\n\nQuestion: {q}\nA) yes\nB) no\nAnswer:"}]
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": "AB"[i % 2]}]})
    return rows


def write_tiny_data(out_dir: Path, n: int = 24) -> Path:
    """Write sft.jsonl and dpo.jsonl into out_dir; returns out_dir."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sft, dpo = tiny_rows(n)
    for name, rows in (("sft.jsonl", sft), ("dpo.jsonl", dpo)):
        (out_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out_dir
