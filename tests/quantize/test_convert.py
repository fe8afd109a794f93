"""HF -> GGUF f16 -> Q8_0 / Q4_K_M round trip on a tiny random llama, plus clear errors on bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assistant.errors import OnboardError
from assistant.settings import Settings
from quantize.convert import DEFAULT_EVAL_TEXT, check_hf_dir, quantize_model


def _settings() -> Settings:
    from assistant.settings import load_settings

    # One llama.cpp thread: on a busy shared CPU two spinning threads are ~10x slower than one.
    return load_settings(n_threads=1)


def test_round_trip_tiny_llama_cli_and_resume(tiny_llama_dir, run_cli, onboard_home):
    code, out, err = run_cli("quantize", str(tiny_llama_dir), "--types", "f16,q8_0,q4_k_m",
                             "--name", "tiny-q", "--threads", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert list(report) == ["f16", "q8_0", "q4_k_m"]
    summary = []
    for qtype, r in report.items():
        summary.append(f"{qtype}: {r['size_mb']} MB  ppl {r['ppl']:.1f}  ratio vs f16 {r['ppl_ratio']}  "
              f"{r['tokens_per_s']} tok/s  tensors {r['tensor_types']['counts']}")
        assert Path(r["path"]).read_bytes()[:4] == b"GGUF"
        assert r["verified"] is True, r
        assert r["generated_tokens"] == 16  # it loads and generates
        assert r["ppl"] > 1 and r["ppl_ratio"] <= r["max_ppl_ratio"]
    assert report["f16"]["ppl_ratio"] == 1.0
    assert report["q8_0"]["size"] < report["f16"]["size"]
    # hidden 64 is not a multiple of 256: llama.cpp falls back from Q4_K, and the report says so
    q4_groups = report["q4_k_m"]["tensor_types"]["groups"]
    assert "Q4_K" not in report["q4_k_m"]["tensor_types"]["counts"]
    assert q4_groups["attn_q.weight"] == "Q5_0"
    # the smallest verified type is registered with a card
    assert report["q4_k_m"]["registered"] is True
    folder = onboard_home / "models" / "tiny-q"
    card = json.loads((folder / "card.json").read_text())
    assert card["quant"] == "Q4_K_M" and card["arch"] == "llama" and card["params"] == "3.2M"
    assert card["quantize"]["types"]["q8_0"]["ppl_ratio"] == report["q8_0"]["ppl_ratio"]
    assert "## Quantization" in (folder / "card.md").read_text()
    from assistant.files import sha256_file
    from assistant.llm.registry import resolve_model

    settings = _settings()
    assert sha256_file(resolve_model("tiny-q", settings)) == card["sha256"]
    code, out, _ = run_cli("models", "list", "--json")
    assert any(m["name"] == "tiny-q" and m["source"] == "built" for m in json.loads(out))
    print("\n" + "\n".join(summary))  # the perplexity ratios, visible with pytest -s

    # a second run (e.g. after kill -9) reuses finished files instead of rebuilding them
    steps: list[str] = []
    again = quantize_model(tiny_llama_dir, types=("f16", "q8_0", "q4_k_m"), name="tiny-q", settings=settings,
                           progress=steps.append)
    assert [s for s in steps if "reusing" in s] == ["f16: reusing tiny-q.f16.gguf", "q8_0: reusing tiny-q.q8_0.gguf",
                                                    "q4_k_m: reusing tiny-q.q4_k_m.gguf"]
    assert again["q4_k_m"]["ppl"] == report["q4_k_m"]["ppl"]
    # other held-out text: the files are kept, only the perplexity check runs again
    steps.clear()
    other = quantize_model(tiny_llama_dir, types=("q4_k_m",), name="tiny-q", settings=settings,
                           eval_text=DEFAULT_EVAL_TEXT[:1200], progress=steps.append)
    assert steps[:4] == ["f16: reusing tiny-q.f16.gguf", "f16: verifying (load, generate, perplexity)",
                         "q4_k_m: reusing tiny-q.q4_k_m.gguf", "q4_k_m: verifying (load, generate, perplexity)"]
    assert not [s for s in steps if "converting" in s or "quantizing" in s]
    assert other["q4_k_m"]["eval_tokens"] < report["q4_k_m"]["eval_tokens"] and other["q4_k_m"]["verified"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_and_corrupt_hf_dirs_give_clear_errors(tiny_llama_dir, tmp_path, run_cli):
    with pytest.raises(OnboardError, match="not found"):
        check_hf_dir(tmp_path / "nope")
    code, _, err = run_cli("quantize", str(tmp_path / "nope"))
    assert code != 0 and err.startswith("onboard: error: HF model folder not found") and "Traceback" not in err

    no_config = _copy(tiny_llama_dir, tmp_path / "no_config")
    (no_config / "config.json").unlink()
    with pytest.raises(OnboardError, match="no config.json"):
        check_hf_dir(no_config)

    bad_json = _copy(tiny_llama_dir, tmp_path / "bad_json")
    (bad_json / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], ')
    with pytest.raises(OnboardError, match="not valid JSON"):
        check_hf_dir(bad_json)

    truncated = _copy(tiny_llama_dir, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnboardError, match="model.safetensors is corrupt: truncated"):
        check_hf_dir(truncated)
    code, _, err = run_cli("quantize", str(truncated), "--types", "q8_0")
    assert code != 0 and "corrupt" in err and "Traceback" not in err

    no_weights = _copy(tiny_llama_dir, tmp_path / "no_weights")
    weights = no_weights / "model.safetensors"
    weights.unlink()
    with pytest.raises(OnboardError, match="has no weights"):
        check_hf_dir(no_weights)

    no_tok = _copy(tiny_llama_dir, tmp_path / "no_tok")
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(OnboardError, match="no tokenizer"):
        check_hf_dir(no_tok)

    with pytest.raises(OnboardError, match="unknown quant type"):
        quantize_model(tiny_llama_dir, types="f16,q3_bogus", settings=_settings())


@pytest.mark.slow  # a converter subprocess (imports torch): ~8 s on an idle machine
def test_converter_failure_is_one_clear_line(tiny_llama_dir, tmp_path):
    odd = _copy(tiny_llama_dir, tmp_path / "odd")
    config = json.loads((odd / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (odd / "config.json").write_text(json.dumps(config))
    with pytest.raises(OnboardError, match="converting .* to GGUF failed: .*NoSuchModelForCausalLM"):
        quantize_model(odd, out_dir=tmp_path / "out", types=("f16",), settings=_settings(), verify=False)
    assert not list((tmp_path / "out").glob("*.gguf")) and not list((tmp_path / "out").glob(".*tmp*"))


def test_default_eval_text_is_long_enough_for_a_perplexity_window():
    assert len(DEFAULT_EVAL_TEXT.split()) > 250


def test_card_and_heldout_text_come_from_the_training_run(tmp_path):
    """OUT/NN-stage/model from `onboard train`: held-out SFT answers feed the perplexity check and
    run.json + stage manifests give the card its base, recipe and data."""
    from quantize.card import read_train_meta
    from quantize.verify import default_eval_text

    model_dir = tmp_path / "02-sft" / "model"
    model_dir.mkdir(parents=True)
    answer = "Load a model by sending its GGUF path to the load endpoint with the context length. "
    rows = [{"prompt": [{"role": "user", "content": "How?"}], "completion": [{"role": "assistant", "content": answer * 2}]}]
    (tmp_path / "02-sft" / "heldout.jsonl").write_text("\n".join(json.dumps(r) for r in rows * 3))
    text, source = default_eval_text(model_dir)
    assert source.endswith("02-sft/heldout.jsonl") and answer.strip() in text and "How?" not in text
    (tmp_path / "02-sft" / "manifest.json").write_text(json.dumps(
        {"stage": "sft", "inputs": {"models": [{"ref": "base", "path": "/c/smollm2-135m-hf"}],
                                    "data": [{"path": "data/sft.jsonl", "sha256": "ab" * 32}]}}))
    (tmp_path / "run.json").write_text(json.dumps(
        {"recipe": "docs-specialist", "source": "models/recipes/docs-specialist.yaml",
         "stages": [{"stage": "sft", "type": "sft", "dir": str(tmp_path / "02-sft"), "metrics": {"final_loss": 1.2}}]}))
    meta = read_train_meta(model_dir)
    assert meta["base"] == "base (/c/smollm2-135m-hf)" and meta["recipe"]["name"] == "docs-specialist"
    assert meta["data"][0]["path"] == "data/sft.jsonl"
    empty = tmp_path / "plain"
    empty.mkdir()
    assert default_eval_text(empty)[1] == "built-in sample of technical docs prose"
