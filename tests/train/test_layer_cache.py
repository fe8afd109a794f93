"""The frozen-layer cache on a real tiny llama: the same training, fewer layer calls."""
from __future__ import annotations

import pytest

from train.common import StageContext, detect_device
from train.recipe import SftParams
from train.tiny import make_tiny_llama, write_tiny_data


@pytest.fixture(scope="module")
def deep_llama(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("deep") / "llama", layers=4)


def _train(model_dir, data, out, **kw):
    from train.sft import run_sft

    p = SftParams(lr=3e-3, batch_size=2, max_length=64, lora_r=8, lora_alpha=16, lora_layers=2, epochs=3,
                  save_steps=100, warmup_ratio=0.0, scheduler="constant", **kw)
    out.mkdir()
    ctx = StageContext(out_dir=out, device=detect_device(), progress=False)
    return run_sft(model_dir, [data / "sft.jsonl"], p, ctx), ctx


def test_cached_training_matches_uncached_training(deep_llama, tmp_path):
    from safetensors.torch import load_file

    data = write_tiny_data(tmp_path / "data")
    cached, c_ctx = _train(deep_llama, data, tmp_path / "cached")
    plain, p_ctx = _train(deep_llama, data, tmp_path / "plain", cache_frozen_layers=False)
    info = cached["layer_cache"]
    assert "layer_cache" not in plain
    # 3 epochs: every packed row is computed once and reused twice
    assert info["cached_layers"] == 2 and info["misses"] > 0 and info["hits"] == 2 * info["misses"]
    loss_c = [e["loss"] for e in cached["loss_curve"]]
    loss_p = [e["loss"] for e in plain["loss_curve"]]
    assert len(loss_c) == len(loss_p) and loss_c == pytest.approx(loss_p, rel=1e-3, abs=1e-4)
    assert loss_c[-1] < loss_c[0]  # it did train
    # the saved model is the stock architecture (the cache is gone), with the same weights
    a, b = load_file(c_ctx.model_dir / "model.safetensors"), load_file(p_ctx.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and any(".layers.3." in k for k in a)
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-3, k
    # gradient checkpointing (the CUDA setting) needs inputs that carry a gradient: no cache there
    checkpointed, _ = _train(deep_llama, data, tmp_path / "gc", gradient_checkpointing=True)
    assert "layer_cache" not in checkpointed and checkpointed["final_loss"] < checkpointed["first_loss"]


def test_cache_stays_out_where_it_does_not_apply(deep_llama, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from train.layer_cache import frozen_layer_cache, frozen_prefix_length

    model = AutoModelForCausalLM.from_pretrained(deep_llama)
    assert frozen_prefix_length(model) == 0  # everything trains: nothing is frozen below
    for name, p in model.named_parameters():
        p.requires_grad = ".layers.2." in name or ".layers.3." in name
    assert frozen_prefix_length(model) == 2
    model.config.attention_dropout = 0.1  # dropout makes a layer's output differ per epoch
    assert frozen_prefix_length(model) == 0
    model.config.attention_dropout = 0.0
    stock = list(model.model.layers)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    want = model(input_ids=ids).logits
    with frozen_layer_cache(model) as cache:
        first, again = model(input_ids=ids).logits, model(input_ids=ids).logits
        model(input_ids=ids[:, :3])
    assert torch.allclose(first, want, atol=1e-5) and torch.equal(first, again)
    assert (cache.misses, cache.hits) == (2, 1)
    assert list(model.model.layers) == stock  # put back on exit
    with frozen_layer_cache(model, max_bytes=0) as cache:  # no room: computed every time, still right
        assert torch.allclose(model(input_ids=ids).logits, want, atol=1e-5)
    assert cache.bytes == 0 and not cache.store
    with frozen_layer_cache(model, enabled=False) as cache:
        assert not cache.enabled and list(model.model.layers) == stock
