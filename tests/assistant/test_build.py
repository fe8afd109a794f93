"""`onboard build`: configuration, resumable stage bookkeeping, and (slow) the real end-to-end run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.build import STAGES, Build, BuildConfig, default_name, make_config
from assistant.errors import OnboardError
from assistant.settings import load_settings


def test_default_name_skips_generic_folders(tmp_path):
    d = tmp_path / "nitro" / "docs"
    d.mkdir(parents=True)
    assert default_name(d) == "nitro-specialist"


def test_quick_config_is_small_and_bad_paths_fail(tmp_path):
    s = load_settings()
    (tmp_path / "docs").mkdir()
    cfg = make_config(s, BuildConfig(str(tmp_path / "docs"), quick=True))
    assert cfg.max_chunks and cfg.max_chunks <= 50 and cfg.max_steps and cfg.max_steps <= 50 and cfg.runs <= 3
    assert cfg.teacher == cfg.student  # no 1.5B teacher on the CPU quick path
    with pytest.raises(OnboardError, match="not a folder"):
        make_config(s, BuildConfig(str(tmp_path / "missing")))
    with pytest.raises(OnboardError, match="--data"):
        make_config(s, BuildConfig(str(tmp_path / "docs"), data=str(tmp_path / "nope.csv")))


def test_build_skips_done_stages_and_resumes_after_a_failure(tmp_path):
    s = load_settings()
    (tmp_path / "docs").mkdir()
    cfg = make_config(s, BuildConfig(str(tmp_path / "docs"), quick=True, name="t"))
    calls: list[str] = []
    fail = {"train"}

    def stage(name):
        def fn():
            calls.append(name)
            if name in fail:
                raise RuntimeError("killed")
            return {"ran": name}
        return fn

    funcs = {n: stage(n) for n in STAGES}
    with pytest.raises(RuntimeError):
        Build(s, cfg, tmp_path / "b").run(stages=funcs)
    assert calls == ["index", "data", "train"]
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["stages"]["data"]["status"] == "done" and state["stages"]["train"]["status"] == "running"

    fail.clear()
    calls.clear()
    Build(s, cfg, tmp_path / "b").run(stages=funcs)  # a new process: state comes from disk
    assert calls == ["train", "quantize", "evaluate", "report"]

    calls.clear()
    Build(s, cfg, tmp_path / "b").run(stages=funcs)
    assert calls == []  # all done, nothing changed

    cfg.runs = 5  # an evaluation setting: only evaluate and what follows it rerun
    calls.clear()
    Build(s, cfg, tmp_path / "b").run(stages=funcs)
    assert calls == ["evaluate", "report"]

    cfg.cloze_per_chunk = 6  # a data setting: data and every stage after it rerun
    calls.clear()
    Build(s, cfg, tmp_path / "b").run(stages=funcs)
    assert calls == ["data", "train", "quantize", "evaluate", "report"]

    calls.clear()
    Build(s, cfg, tmp_path / "b").run(stages=funcs, force=True)
    assert calls == list(STAGES)


def test_cli_build_bad_corpus(run_cli, tmp_path):
    code, out, err = run_cli("build", str(tmp_path / "nothing"), "--quick")
    assert code != 0 and err.startswith("onboard: error:") and "not a folder" in err


def test_build_modes_are_checked_before_anything_runs(run_cli, tmp_path):
    (tmp_path / "docs").mkdir()
    code, out, err = run_cli("build", str(tmp_path / "docs"), "--quick", "--modes", "rag,hybird",
                             "--out", str(tmp_path / "b"))
    assert code != 0 and err.startswith("onboard: error:") and "hybird" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()
    cfg = make_config(load_settings(), BuildConfig(str(tmp_path / "docs"), modes=("rag", "hybrid")))
    assert cfg.modes == ("rag", "hybrid")


@pytest.mark.slow
def test_build_quick_end_to_end(tmp_path, run_cli, nitro_docs, nitro_mcq):
    """Real index -> synthesis -> training -> GGUF -> eval -> report card on a slice of the Nitro docs,
    then `onboard ask --model NAME` uses the registered specialist."""
    code, out, err = run_cli("build", str(nitro_docs), "--quick", "--name", "nitro-test", "--mcq", str(nitro_mcq),
                             "--max-chunks", "4", "--max-steps", "2", "--cloze-per-chunk", "3", "--runs", "1",
                             "--threads", "2", "--out", str(tmp_path / "b"))
    assert code == 0, err
    card = json.loads((tmp_path / "b" / "report" / "report_card.json").read_text())
    assert {s["mode"] for s in card["domain"]} == {"plain", "rag", "hybrid"}
    assert {s["model"] for s in card["domain"]} == {"base smollm2-135m", "tuned nitro-test"}
    assert card["retention"] and set(card["stages"]) == {"index", "data", "train", "quantize", "evaluate"}
    assert Path(tmp_path / "b" / "report" / "report_card.png").stat().st_size > 10_000
    code, out, err = run_cli("ask", "What port does Nitro use?", "--model", "nitro-test", "--max-tokens", "8")
    assert code == 0, err
    code, out, err = run_cli("build", str(nitro_docs), "--quick", "--name", "nitro-test", "--mcq", str(nitro_mcq),
                             "--max-chunks", "4", "--max-steps", "2", "--cloze-per-chunk", "3", "--runs", "1",
                             "--threads", "2", "--out", str(tmp_path / "b"))
    assert code == 0 and err.count("settings unchanged - skipped") == 6  # resumed: every stage already done


def test_budget_plan_is_stored_and_kept_by_a_resumed_build(tmp_path):
    s = load_settings()
    (tmp_path / "docs").mkdir()
    cfg = make_config(s, BuildConfig(str(tmp_path / "docs"), name="t", budget=5400, max_steps=9))
    plan = {"max_chunks": 7, "max_steps": 11, "stage_s": {"data": 60.0}}
    calls: list[str] = []

    def funcs(build):
        def plan_stage():
            calls.append("plan")
            build._apply_plan(plan)
            return plan
        return {"index": lambda: {}, "plan": plan_stage, "data": lambda: calls.append("data") or {}}

    b = Build(s, cfg, tmp_path / "b")
    b.run(stages=funcs(b))
    assert calls == ["plan", "data"] and (b.cfg.max_chunks, b.cfg.max_steps) == (7, 9)  # never above --max-steps
    assert json.loads((tmp_path / "b" / "state.json").read_text())["stages"]["plan"]["result"] == plan
    calls.clear()
    cfg2 = make_config(s, BuildConfig(str(tmp_path / "docs"), name="t", budget=5400, max_steps=9))
    b2 = Build(s, cfg2, tmp_path / "b")  # a new process after a kill: the stored plan, not a new one
    b2.run(stages=funcs(b2))
    assert calls == [] and (b2.cfg.max_chunks, b2.cfg.max_steps) == (7, 9)


def test_data_stage_refit_raises_the_cap_and_is_kept_by_a_resumed_build(tmp_path):
    s = load_settings()
    (tmp_path / "docs").mkdir()
    plan = {"max_chunks": None, "max_steps": 11, "stage_s": {"train": 600.0}}
    fits = {"estimate": {"max_steps": 25, "train_s": 900.0},
            # a time fit (train/time_fit.py) starts the stage for up to the recipe's epochs
            "timed": {"max_steps": 25, "train_s": 900.0, "most_steps": 40, "time_limit_s": 1000.0}}

    def funcs(build):
        def plan_stage():
            build._apply_plan(plan)
            return plan

        def data_stage():
            build._apply_fit(fit)
            return {"fit": fit}
        return {"index": lambda: {}, "plan": plan_stage, "data": data_stage}

    for kind, asked, want in (("estimate", None, 25), ("estimate", 9, 9), ("timed", None, 40), ("timed", 9, 9)):
        fit = fits[kind]
        out = tmp_path / f"b{kind}{asked}"
        b = Build(s, make_config(s, BuildConfig(str(tmp_path / "docs"), name="t", budget=5400, max_steps=asked)), out)
        b.run(stages=funcs(b))
        assert b.cfg.max_steps == want  # the refit may raise the plan's cap, never above --max-steps
        b2 = Build(s, make_config(s, BuildConfig(str(tmp_path / "docs"), name="t", budget=5400, max_steps=asked)), out)
        b2.run(stages={k: (lambda: {}) for k in ("index", "plan", "data")})  # resumed: all skipped
        assert b2.cfg.max_steps == want
