"""Varlen attention for packed, padding-free training (CPU, or GPUs without flash-attn).

Padding-free packing (our SFT default) flattens a batch into one row of concatenated examples.
Stock sdpa then attends over the whole row through a block-diagonal mask: (sum of L_i)^2 work
for sum of L_i^2 useful, e.g. a 4x1024 batch of ~150-token Q&A pairs costs ~30x the attention it
needs. trl's collator hands the example boundaries to the model as `cu_seq_lens_q` (flash-attn's
varlen interface); this implementation runs causal sdpa on each example between them instead.
Everything else (unpacked batches, padding masks, decoding) goes to transformers' sdpa unchanged.

    from train.attention import register
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=register())
"""
from __future__ import annotations

NAME = "onboard_varlen"


def varlen_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                is_causal=None, cu_seq_lens_q=None, cu_seq_lens_k=None, **kwargs):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    # query: (1, heads, L, d); key/value: (1, kv_heads, L, d) for a packed row.
    packed = (cu_seq_lens_q is not None and query.shape[0] == 1 and query.shape[2] > 1
              and key.shape[2] == query.shape[2]
              and (cu_seq_lens_k is None or torch.equal(cu_seq_lens_k, cu_seq_lens_q)))
    bounds = cu_seq_lens_q.tolist() if packed else []
    if not packed or bounds[0] != 0 or bounds[-1] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    gqa = key.shape[1] != query.shape[1]
    pieces = [torch.nn.functional.scaled_dot_product_attention(
                  query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout, scale=scaling,
                  is_causal=True, enable_gqa=gqa)
              for s, e in zip(bounds[:-1], bounds[1:]) if e > s]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make NAME a valid `attn_implementation` (idempotent); masks are built as for sdpa."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, varlen_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
