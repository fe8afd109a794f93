"""Recipe schema: the shipped recipes load; every kind of mistake gives one clear OnboardError."""
from __future__ import annotations

import pytest

from assistant.errors import OnboardError
from train.recipe import DpoParams, MergeParams, SftParams, list_recipes, load_recipe, parse_recipe


def test_shipped_recipes_load_by_name():
    assert {"seed", "docs-specialist"} <= set(list_recipes())
    seed = load_recipe("seed")
    assert [s.type for s in seed.stages] == ["merge", "dpo", "sft"]
    assert seed.stages[0].models == ["base", "partner"]
    assert seed.stages[0].params.t["self_attn"] == [0.0, 0.5, 0.3, 0.7, 1.0]
    docs = load_recipe("docs-specialist")
    assert [s.type for s in docs.stages] == ["sft", "dpo", "merge"]
    sft = docs.stages[0].params
    assert isinstance(sft, SftParams) and (sft.lora_r, sft.lora_alpha, sft.holdout) == (256, 512, 0.1)
    assert sft.target_modules == "all-linear" and sft.lr == 2e-4
    assert isinstance(docs.stages[1].params, DpoParams) and docs.stages[1].params.beta == 0.1
    assert isinstance(docs.stages[2].params, MergeParams) and docs.stages[2].params.sweep == [0.5, 0.7, 0.85, 1.0]
    assert docs.stages[2].models == ["base", "previous"]


def test_recipe_from_path_and_user_folder(tmp_path, onboard_home):
    path = tmp_path / "mine.yaml"
    path.write_text("stages:\n  - type: sft\n    max_steps: 3\n")
    r = load_recipe(path)
    assert r.name == "mine" and r.stages[0].model == "base" and r.stages[0].data == ["sft.jsonl"]
    (onboard_home / "recipes").mkdir()
    (onboard_home / "recipes" / "own.yaml").write_text("name: own\nstages: [{type: dpo, beta: 0.2}]\n")
    assert load_recipe("own").stages[0].params.beta == 0.2


@pytest.mark.parametrize("doc, message", [
    ({"stages": [{"type": "distill"}]}, "unknown stage type 'distill'"),
    ({"stages": []}, "non-empty list"),
    ({"stages": [{"type": "sft", "lora_rank": 8}]}, "unknown key(s) lora_rank"),
    ({"stages": [{"type": "sft", "lr": "fast"}]}, "lr: 'fast'"),
    ({"stages": [{"type": "sft", "lr": -1}]}, "lr must be positive"),
    ({"stages": [{"type": "merge", "models": ["base"]}]}, "exactly two"),
    ({"stages": [{"type": "merge", "models": ["base", "x"], "t": 1.5}]}, "between 0 and 1"),
    ({"stages": [{"type": "dpo", "model": "previous"}]}, "first stage has no `previous`"),
    ({"stages": [{"type": "sft"}, {"type": "sft"}]}, "duplicate stage name"),
    ({"stages": [{"type": "sft", "model": "later"}, {"type": "dpo", "name": "later"}]}, "not an earlier stage"),
    ({"stage": [{"type": "sft"}]}, "unknown top-level key(s) stage"),
    ({"stages": [{"type": "merge", "models": ["a", "b"], "score": "nocolon"}]}, "package.module:function"),
])
def test_bad_recipes_fail_with_one_clear_line(doc, message):
    with pytest.raises(OnboardError) as e:
        parse_recipe(doc, "bad.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("recipe bad.yaml")


def test_unknown_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(OnboardError, match="unknown recipe 'nope'.*docs-specialist"):
        load_recipe("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [\n  - type: sft\n")
    with pytest.raises(OnboardError, match="not valid YAML at line"):
        load_recipe(bad)


def test_missing_data_is_caught_before_any_training(tmp_path):
    from train.run import run_recipe

    with pytest.raises(OnboardError, match="no data folder was given"):
        run_recipe(load_recipe("docs-specialist"), tmp_path / "out")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sft.jsonl").write_text('{"prompt": [], "completion": []}\n')
    with pytest.raises(OnboardError, match=r"stage 'dpo': data file .*dpo.jsonl not found"):
        run_recipe(load_recipe("docs-specialist"), tmp_path / "out", data_dir=tmp_path / "data")


def test_cli_errors_are_one_line(run_cli, tmp_path):
    code, out, err = run_cli("train", "no-such-recipe")
    assert code != 0 and err.startswith("onboard: error: unknown recipe") and "Traceback" not in err
    code, out, err = run_cli("train", "seed", "--data", str(tmp_path / "missing"))
    assert code != 0 and "data folder not found" in err
    code, out, err = run_cli("train", "--list")
    assert code == 0 and "docs-specialist" in out and "seed" in out
