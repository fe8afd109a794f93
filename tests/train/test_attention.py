"""Per-example attention for packed rows (train/attention.py) and answer-only LM-head scoring
(train/sft.py) compute exactly what the stock paths compute, on a real tiny llama."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _packed_row(lengths, vocab=49152, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.randint(10, vocab, (n,), generator=g) for n in lengths])[None]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return ids, pos, cu


def _load(path, impl):
    from transformers import AutoModelForCausalLM

    from train.attention import register

    register()
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=impl).eval()


def test_varlen_matches_block_diagonal_sdpa_and_separate_sequences(tiny_llama_dir):
    lengths = [11, 5, 17, 1]
    ids, pos, cu = _packed_row(lengths)
    varlen, sdpa = _load(tiny_llama_dir, "onboard_varlen"), _load(tiny_llama_dir, "sdpa")
    with torch.no_grad():
        packed = varlen(input_ids=ids, position_ids=pos, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                        max_length_q=max(lengths), max_length_k=max(lengths), use_cache=False).logits
        # transformers' block-diagonal mask from position_ids (applied only without a KV cache)
        stock = sdpa(input_ids=ids, position_ids=pos, use_cache=False).logits
        alone = torch.cat([sdpa(input_ids=ids[:, s:e]).logits for s, e in zip(cu[:-1], cu[1:])], dim=1)
    assert torch.allclose(packed, stock, atol=1e-5)
    assert torch.allclose(packed, alone, atol=1e-5)
    # Attending across the boundary would change the later examples: the check is not vacuous.
    with torch.no_grad():
        leaky = sdpa(input_ids=ids, use_cache=False).logits  # one causal sequence, no boundaries
    assert not torch.allclose(packed[:, lengths[0]:], leaky[:, lengths[0]:], atol=1e-3)


def test_varlen_falls_back_to_sdpa_for_padded_batches(tiny_llama_dir):
    varlen, sdpa = _load(tiny_llama_dir, "onboard_varlen"), _load(tiny_llama_dir, "sdpa")
    ids = torch.randint(10, 49152, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        assert torch.allclose(varlen(input_ids=ids, attention_mask=mask).logits,
                              sdpa(input_ids=ids, attention_mask=mask).logits, atol=1e-6)


def test_answer_only_scoring_gives_the_reference_log_probs(tiny_llama_dir):
    from trl.trainer.utils import add_fused_lm_head

    from train.sft import answer_only_scoring

    model = _load(tiny_llama_dir, "sdpa")
    ids, pos, _ = _packed_row([12, 9])
    labels = ids.clone()
    labels[:, :6] = -100  # a prompt: no loss there
    labels[:, 12:16] = -100
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    import trl.trainer.utils as trl_utils

    add_fused_lm_head(model, outputs=("log_probs",))
    with answer_only_scoring(), torch.no_grad():
        assert trl_utils._use_triton(torch.device("cpu"))  # the compact (answer-only) path is the one tested
        fused = model(input_ids=ids, position_ids=pos, labels=labels, fused_lm_head=True, use_cache=False)
    assert not trl_utils._use_triton(torch.device("cpu"))  # restored for other trainers
    target = labels[:, 1:]
    ref = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, target.clamp(min=0)[..., None])[..., 0]
    ref = ref.masked_fill(target == -100, 0)
    assert fused.log_probs.shape == ref.shape
    assert torch.allclose(fused.log_probs, ref, atol=1e-4)
