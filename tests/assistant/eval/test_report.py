"""Result files: summary maths, Markdown table, PNG charts that open, the report card, and the CLI."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from assistant.eval.report import markdown_table, write_eval, write_report_card
from assistant.eval.scoring import summarize


def _rows():
    rows = []
    # model m, mode rag: run 0 gets 2/4 right, run 1 gets 4/4; item 3's source is never retrieved
    for run, right in ((0, {0, 1}), (1, {0, 1, 2, 3})):
        for i in range(4):
            rows.append({"model": "m", "mode": "rag", "run": run, "id": f"q{i}", "kind": "fact", "answer": "A",
                         "too_long": i == 3 and False, "truncated": i == 0, "retrieval_rank": 0 if i == 3 else 1,
                         "retrieval_hit": i != 3, "context_hit": i != 3, "pred_single": "C", "letter_mass": 0.9,
                         "correct_single": i in right, "correct_cyclic": i in right, "correct_calibrated": i in right})
    return rows


def test_summary_mean_std_hit_and_attribution():
    s = summarize(_rows())[0]
    assert s["cyclic"] == pytest.approx(0.75) and s["cyclic_std"] == pytest.approx(0.353553, abs=1e-5)
    assert s["hit_at_k"] == pytest.approx(0.75) and s["truncated"] == 1
    # wrong answers: run 0 misses q2 (retrieved) and q3 (not retrieved) -> 1 + 1 over 2 runs
    assert s["miss_retrieval"] == pytest.approx(0.5) and s["miss_model"] == pytest.approx(0.5)
    assert s["top_letter"] == "C" and s["top_letter_share"] == 1.0
    assert "evidence_hit" not in s  # items without evidence quotes: no such number


def test_evidence_in_context_counts_items_that_have_quotes():
    from assistant.eval.scoring import evidence_in
    from assistant.rag.hits import Hit

    docs = [Hit(path="a.md", heading="", text="Windows:  `PowerShell` are\nrequired."),
            Hit(path="a.md", heading="", text="Linux: curl")]
    assert evidence_in(["windows: `powershell` are required."], docs)
    assert not evidence_in(["`PowerShell` are required", "macOS: brew"], docs)  # every quote must be there
    rows = [{**r, "evidence_hit": {"q0": True, "q1": False, "q2": None}.get(r["id"], True)} for r in _rows()]
    s = summarize(rows)[0]
    assert s["evidence_hit"] == pytest.approx(2 / 3)
    # right with the evidence in the prompt: q0 twice, q3 once of twice; without: q1 twice
    assert s["right_evidence_in"] == pytest.approx(3 / 4) and s["right_evidence_out"] == 1.0
    assert "| 75.0 | 75.0 | 66.7 (right 75 / 100) |" in markdown_table([s])


def test_write_eval_files_exist_and_png_opens(tmp_path):
    rows = _rows()
    files = write_eval(tmp_path / "out", rows, summarize(rows), {"mcq_name": "t.jsonl", "items": 4, "runs": 2,
                                                                "command": "onboard eval ..."})
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[0])["id"] == "q0"
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| m | rag | 75.0 ± 35.4 |" in md and "q3" in md
    with Image.open(files["chart"]) as im:
        im.verify()
    with Image.open(files["chart"]) as im:
        assert im.size[0] > 300 and im.size[1] > 200
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["summary"][0]["model"] == "m"


def test_markdown_table_marks_missing_metrics():
    s = summarize([{**r, "mode": "plain", "retrieval_hit": None, "context_hit": None} for r in _rows()])
    table = markdown_table(s)
    assert table.splitlines()[2].startswith("| m | plain | 75.0 ± 35.4")
    assert "| – | – |" in table


def test_report_card_files(tmp_path):
    domain = summarize(_rows())
    card = {"name": "x-specialist", "corpus": "/docs", "recipe": "docs-specialist", "student": "smollm2-135m",
            "teacher": "smollm2-135m", "quick": True, "command": "onboard build /docs --quick",
            "domain": domain, "retention": [{**domain[0], "mode": "plain"}],
            "models": {"base": {"gguf": "a.gguf", "bytes": 98e6, "tokens_per_s": 100.0, "ttft_ms": 20}},
            "stages": {"index": {"seconds": 40, "note": "29 files"}, "train": {"seconds": 600}}}
    files = write_report_card(tmp_path, card)
    md = open(files["markdown"]).read()
    assert "# Report card: x-specialist" in md and "General-skill retention" in md and "| index | 0.7 |" in md
    with Image.open(files["chart"]) as im:
        im.verify()


def test_report_card_shows_the_corpus_relative_to_where_the_build_ran(tmp_path, monkeypatch):
    from assistant.eval.report import display_path, report_card_markdown

    (tmp_path / "shared" / "docs").mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert display_path(str(tmp_path / "shared" / "docs")) == "../shared/docs"
    card = {"name": "x", "corpus": str(tmp_path / "shared" / "docs"), "domain": []}
    assert str(tmp_path) not in report_card_markdown(card) and "`../shared/docs`" in report_card_markdown(card)


def test_cli_eval_csv_end_to_end(tmp_path, run_cli):
    csv_path = tmp_path / "q.csv"
    csv_path.write_text('question,a,b,c,d,correct\n"What is 2 + 2?","A. 3","B. 4","C. 5","D. 22",B\n'
                        '"Which planet is the Red Planet?","A. Venus","B. Jupiter","C. Mars","D. Pluto",C\n')
    code, out, err = run_cli("eval", "--mcq", str(csv_path), "--modes", "plain", "--runs", "2",
                             "--threads", "1", "--out", str(tmp_path / "res"))
    assert code == 0, err
    assert "| smollm2-135m | plain |" in out
    for name in ("results.jsonl", "summary.json", "results.md", "accuracy.png"):
        assert (tmp_path / "res" / name).is_file()
    assert len((tmp_path / "res" / "results.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("argv,msg", [
    (["eval", "--mcq", "/nonexistent.jsonl", "--modes", "plain"], "MCQ file not found"),
    (["eval", "--mcq", "general", "--modes", "plain,wild"], "unknown mode"),
    (["eval", "--mcq", "general", "--modes", "rag", "--index", "nope"], "no index named 'nope'"),
    (["eval", "--mcq", "general", "--modes", "plain", "--runs", "0"], "--runs"),
])
def test_cli_eval_bad_input(run_cli, argv, msg):
    code, out, err = run_cli(*argv)
    assert code != 0 and err.startswith("onboard: error:") and msg in err and "Traceback" not in err


def test_eval_checkpoint_keeps_valid_runs_and_moves_other_settings_aside(tmp_path):
    from assistant.eval.run import Checkpoint

    path = tmp_path / "rows.checkpoint.jsonl"
    cp = Checkpoint(path, {"seed": 0}, models={"m": "a.gguf"})
    row = {"model": "m", "mode": "plain", "id": "q1"}
    cp.append([{**row, "run": 0}, {**row, "run": 1}])
    cp.append([{**row, "id": "q2", "run": 1}])  # q2 killed after its second run was written
    with open(path, "a") as f:
        f.write('{"model": "m", "mo')  # a line cut by kill -9
    again = Checkpoint(path, {"seed": 0}, models={"m": "a.gguf", "other": "b.gguf"})
    assert again.done == {("m", "plain", "q1"): [{**row, "run": 0}, {**row, "run": 1}],
                          ("m", "plain", "q2"): [{**row, "id": "q2", "run": 1}]}  # model-file field stays inside
    assert Checkpoint(path, {"seed": 0}, models={"m": "a.gguf"}).done.keys() == again.done.keys()
    assert Checkpoint(path, {"seed": 0}, models={"n": "c.gguf"}).done == {}  # m's rows kept...
    assert len(Checkpoint(path, {"seed": 0}, models={"m": "a.gguf"}).done) == 2
    assert Checkpoint(path, {"seed": 0}, models={"m": "new.gguf"}).done == {}  # ...until m is rebuilt
    cp = Checkpoint(path, {"seed": 0}, models={"m": "a.gguf"})
    cp.append([{**row, "run": 0}, {**row, "run": 1}])
    assert Checkpoint(path, {"seed": 1}, models={"m": "a.gguf"}).done == {}  # other settings: start over...
    stale = tmp_path / "rows.checkpoint.stale.jsonl"
    assert len(stale.read_text().splitlines()) == 3  # ...with the old rows moved aside, not deleted


def test_eval_checkpoint_scores_a_model_rebuilt_in_place_again(tmp_path):
    """`onboard build` again writes its GGUF to the same path: the old model's rows must go."""
    import os

    from assistant.eval.run import Checkpoint

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF old")
    path = tmp_path / "rows.checkpoint.jsonl"
    Checkpoint(path, {"seed": 0}, models={"m": str(model)}).append(
        [{"model": "m", "mode": "rag", "id": "q1", "run": 0}])
    assert len(Checkpoint(path, {"seed": 0}, models={"m": str(model)}).done) == 1
    model.write_bytes(b"GGUF rebuilt")
    os.utime(model, ns=(1, 1))
    assert Checkpoint(path, {"seed": 0}, models={"m": str(model)}).done == {}


def test_cli_eval_rerun_adds_a_mode_and_runs_and_scores_only_them(tmp_path, run_cli, nitro_home_env):
    csv_path = tmp_path / "q.csv"
    csv_path.write_text('question,a,b,c,d,correct\n"Which port does Nitro listen on by default?",'
                        '"A. 3928","B. 8080","C. 5000","D. 11434",A\n')
    argv = ["eval", "--mcq", str(csv_path), "--threads", "1", "--index", "nitro", "--k", "2",
            "--out", str(tmp_path / "res")]
    code, _, err = run_cli(*argv, "--modes", "plain", "--runs", "2")
    assert code == 0, err
    code, out, err = run_cli(*argv, "--modes", "plain,rag", "--runs", "2")
    assert code == 0, err
    assert "plain · q-1 (done earlier)" in err and "rag · q-1 (" in err and "rag · q-1 (done earlier)" not in err
    assert "| smollm2-135m | plain |" in out and "| smollm2-135m | rag |" in out
    assert len((tmp_path / "res" / "results.jsonl").read_text().splitlines()) == 4
    code, out, err = run_cli(*argv, "--modes", "plain", "--runs", "3")  # one more run: only run 2 is scored
    assert code == 0, err
    assert "plain · q-1 (" in err and "(done earlier)" not in err
    rows = [json.loads(line) for line in (tmp_path / "res" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["run"] for r in rows) == [0, 1, 2] and {r["mode"] for r in rows} == {"plain"}
    checkpoint = (tmp_path / "res" / "rows.checkpoint.jsonl").read_text().splitlines()
    assert len(checkpoint) == 1 + 5  # header, plain runs 0-2, rag runs 0-1


def test_evaluate_reuses_done_items_without_scoring(smollm):
    from assistant.eval.mcq import MCQItem
    from assistant.eval.scoring import evaluate

    item = MCQItem("q1", "What is 2 + 2?", ["3", "4", "5", "6"], 1)
    done_rows = [{"model": "m", "mode": "plain", "run": 0, "id": "q1", "too_long": False, "answer_shown": "B",
                  "single_lp": [-3.0, -0.1, -3.0, -3.0], "pred_single": "B", "letter_mass": 0.9,
                  "correct_single": True, "correct_cyclic": True}]
    seen = []
    rows = evaluate([item], {"m": smollm}, ["plain"], runs=1, done={("m", "plain", "q1"): done_rows},
                    on_step=seen.append, on_item=lambda r: seen.append("scored"))
    assert seen == ["m · plain · q1 (done earlier)"] and rows[0]["correct_calibrated"] is True
    scored = []
    rows = evaluate([item], {"m": smollm}, ["plain"], runs=3, done={("m", "plain", "q1"): done_rows},
                    on_item=scored.append)
    assert [r["run"] for r in rows] == [0, 1, 2] and rows[0]["single_lp"] == [-3.0, -0.1, -3.0, -3.0]
    assert [[r["run"] for r in item_rows] for item_rows in scored] == [[1, 2]]  # only the new runs are scored
    scored = []
    rows = evaluate([item], {"m": smollm}, ["plain"], runs=3, on_item=scored.append,
                    done={("m", "plain", "q1"): [{**r, "run": 2} for r in done_rows]})
    assert [r["run"] for r in rows] == [0, 1, 2] and [[r["run"] for r in x] for x in scored] == [[0, 1]]
