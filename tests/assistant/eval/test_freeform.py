"""Free-form evaluation: grader prompts, grader checks, the resumable run and its report, on the
real SmolLM2 (answering and grading) over the real Nitro index."""
from __future__ import annotations

import json

import pytest

from assistant.eval.freeform import (
    CHECK_REFERENCE,
    CHECK_WRONG,
    NONE_OF_THESE,
    AnswerCache,
    check_answers,
    evidence_by_id,
    grade,
    grader_messages,
)
from assistant.eval.mcq import read_mcq
from assistant.eval.scoring import LetterScorer, shuffled_order


def test_grader_sees_no_answer_options_but_a_none_choice():
    msgs = grader_messages("Which port?", "It listens on 3928.", ["8080", "3928", "11434", "5000"])
    user = msgs[1]["content"]
    assert "It listens on 3928." in user and f"E. {NONE_OF_THESE}" in user and "B. 3928" in user


def test_check_answers_reference_and_wrong(nitro_mcq):
    items = read_mcq(nitro_mcq)
    evidence = evidence_by_id(nitro_mcq)
    checks = check_answers(items, evidence)
    assert checks[CHECK_REFERENCE] == {i.id: evidence[i.id] for i in items}
    for item in items:  # another item's evidence, never one that names the right option
        wrong = checks[CHECK_WRONG][item.id]
        assert wrong != evidence[item.id] and item.options[item.answer].lower() not in wrong.lower()


def test_grade_sums_rotations_and_none_counts_wrong(smollm, nitro_mcq):
    item = read_mcq(nitro_mcq)[0]
    scorer = LetterScorer(smollm)
    row = grade(scorer, item, "Replace api.openai.com with localhost:3928.", shuffled_order(item, 0, 0), {})
    assert row["pred_freeform"] in ("A", "B", "C", "D", "none")
    assert row["correct_freeform"] == (row["pred_freeform"] == item.answer_letter)


def test_answer_cache_survives_a_cut_line(tmp_path):
    path = tmp_path / "answers.jsonl"
    cache = AnswerCache(path)
    cache.put("k1", {"answer": "one"})
    with open(path, "a") as f:
        f.write('{"key": "k2", "ans')  # killed mid-write
    again = AnswerCache(path)
    assert again.get("k1")["answer"] == "one" and again.get("k2") is None


def test_a_rebuilt_model_or_index_under_the_same_name_gets_new_answers(tmp_path):
    import os

    from assistant.eval.freeform import generation_config
    from assistant.rag.store import write_manifest
    from assistant.settings import Settings

    settings = Settings(home=tmp_path)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"old weights")
    write_manifest(settings, "docs", {"sources": {"/docs": {"files": {"a.md": {"chunks": ["a1"]}}}}})
    before = generation_config(settings, str(model), "rag", "docs")
    assert generation_config(settings, str(model), "rag", "docs") == before  # stable: cache hits
    model.write_bytes(b"new weights, same path")
    os.utime(model, ns=(1, 2))
    assert generation_config(settings, str(model), "rag", "docs") != before
    after_model = generation_config(settings, str(model), "rag", "docs")
    write_manifest(settings, "docs", {"sources": {"/docs": {"files": {"a.md": {"chunks": ["a1", "a2"]}}}}})
    assert generation_config(settings, str(model), "rag", "docs") != after_model
    plain = generation_config(settings, str(model), "plain", "docs")
    assert plain["index"] is None and plain["index_version"] is None


def test_eval_freeform_cli_resumes(run_cli, nitro_home_env, nitro_mcq, tmp_path):
    mcq = tmp_path / "two.jsonl"
    mcq.write_text("".join(nitro_mcq.read_text().splitlines(keepends=True)[:2]))
    out = tmp_path / "out"
    argv = ["eval", "--method", "freeform", "--mcq", str(mcq), "--model", "smollm2-135m", "--grader",
            "smollm2-135m", "--modes", "rag", "--index", "nitro", "--max-tokens", "24",
            "--grader-checks", "--threads", "2", "--out", str(out)]
    code, stdout, err = run_cli(*argv, "--runs", "1")
    assert code == 0, err
    assert "free-form %" in stdout and CHECK_REFERENCE in stdout and CHECK_WRONG in stdout
    checks = check_answers(read_mcq(mcq), evidence_by_id(mcq))
    per_run = 2 + len(checks[CHECK_REFERENCE]) + len(checks[CHECK_WRONG])  # answers + grader checks
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == per_run
    assert all("correct_freeform" in r and r["pred_freeform"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["grader"] == "smollm2-135m" and (out / "accuracy.png").stat().st_size > 0
    # answers are cached in ONBOARD_HOME; a rerun with another run grades only that run
    code, stdout, err = run_cli(*argv, "--runs", "2")
    assert code == 0, err
    assert "answer smollm2-135m" not in err and err.count("grade ") == per_run
    assert len((out / "results.jsonl").read_text().splitlines()) == 2 * per_run


@pytest.mark.parametrize("argv,msg", [
    (["--modes", "telepathy"], "unknown mode"),
    (["--runs", "0"], "--runs"),
])
def test_eval_freeform_bad_input(run_cli, nitro_mcq, argv, msg):
    code, _, err = run_cli("eval", "--method", "freeform", "--mcq", str(nitro_mcq), "--model", "smollm2-135m",
                           "--modes", "plain", *argv)
    assert code != 0 and msg in err and "Traceback" not in err
