"""train/common.py: LoRA on the top N layers only (lora_layers)."""
from __future__ import annotations

from train.common import lora_config, top_layer_linears
from train.recipe import SftParams


def test_lora_layers_adapts_only_the_top_layers(tiny_llama_dir):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    names = top_layer_linears(model, 1, "all-linear")
    assert names and all(".layers.1." in n for n in names)
    assert {n.rsplit(".", 1)[-1] for n in names} >= {"q_proj", "v_proj", "down_proj"}
    assert all(n.endswith("q_proj") for n in top_layer_linears(model, 1, ["q_proj"]))

    peft_model = get_peft_model(model, lora_config(SftParams(lora_r=4, lora_alpha=8, lora_layers=1), model))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(".layers.1." in n and "lora_" in n for n in trainable)
    # without lora_layers every layer is adapted, as before
    full = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                          lora_config(SftParams(lora_r=4, lora_alpha=8), None))
    assert any(".layers.0." in n for n, p in full.named_parameters() if p.requires_grad)
