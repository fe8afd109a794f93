"""The MCQ reader (issue 20, defect 6): dict choices matched by key, a clear error for a file that
is not UTF-8, and one bad item reported (file:line) and skipped instead of ending the run."""
from __future__ import annotations

import json

import pytest

from assistant.errors import OnboardError
from assistant.eval.mcq import read_mcq


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_dict_choices_match_the_answer_by_key(tmp_path):
    rows = [
        {"id": "gap", "question": "q1", "choices": {"B": "bee", "C": "sea", "D": "dee"}, "answer": "C"},
        {"id": "shuffled", "question": "q2", "choices": {"D": "d", "A": "a", "C": "c", "B": "b"}, "answer": "B"},
        {"id": "lower", "question": "q3", "choices": {"a": "x", "b": "y"}, "answer": "B. y"},
        {"id": "digits", "question": "q4", "choices": {"2": "two", "3": "three", "10": "ten"}, "answer": "10"},
    ]
    items = {i.id: i for i in read_mcq(_jsonl(tmp_path / "m.jsonl", rows))}
    picked = {k: i.options[i.answer] for k, i in items.items()}
    assert picked == {"gap": "sea", "shuffled": "b", "lower": "y", "digits": "ten"}


def test_latin1_csv_is_one_clear_error(tmp_path, run_cli):
    path = tmp_path / "mcq.csv"
    path.write_bytes("question,a,b,c,d,correct\nQuelle bo\xeete ?,A. un,B. deux,C. trois,D. quatre,A\n"
                     .encode("latin-1"))
    with pytest.raises(OnboardError, match="not UTF-8"):
        read_mcq(path)
    code, _, err = run_cli("eval", "--mcq", str(path), "--modes", "plain")
    assert code != 0 and "not UTF-8" in err and "internal error" not in err
    assert len(err.strip().splitlines()) == 1


def test_one_bad_item_is_reported_and_skipped(tmp_path):
    rows = [{"question": "ok 1", "choices": ["a", "b"], "answer": "A"},
            {"question": "empty option", "choices": ["a", ""], "answer": "A"},
            {"question": "ok 2", "choices": ["a", "b"], "answer": "B"},
            {"question": "bad answer", "choices": ["a", "b"], "answer": "Z"}]
    path = _jsonl(tmp_path / "m.jsonl", rows)
    warnings: list[str] = []
    items = read_mcq(path, warn=warnings.append)
    assert [i.question for i in items] == ["ok 1", "ok 2"]
    assert len(warnings) == 2 and f"{path}:2" in warnings[0] and f"{path}:4" in warnings[1]
    assert all("skipped" in w for w in warnings)


def test_bad_csv_row_is_skipped_with_its_line(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text('question,a,b,c,d,correct\nQ1,A. a,B. b,C. c,D. d,A\n"Q2\nspans lines",A. a,,C. c,D. d,B\n'
                    "Q3,A. a,B. b,C. c,D. d,D\n", encoding="utf-8")
    items = read_mcq(path)
    assert [i.question for i in items] == ["Q1", "Q3"]
    err = capsys.readouterr().err
    assert f"{path}:4" in err and "warning" in err


def test_a_file_without_any_usable_item_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "m.jsonl", [{"question": "", "choices": ["a", "b"], "answer": "A"}])
    with pytest.raises(OnboardError, match="no usable questions.*empty question"):
        read_mcq(path, warn=lambda m: None)


def test_public_set_still_reads(nitro_mcq):
    items = read_mcq(nitro_mcq, warn=lambda m: pytest.fail(m))
    assert len(items) == 40
    assert all(i.evidence for i in items)  # "a || b" quotes are split into a list
    assert any(len(i.evidence) > 1 for i in items) and not any("||" in e for i in items for e in i.evidence)


def test_evidence_as_a_list_or_joined_and_optional(tmp_path):
    rows = [{"id": "joined", "question": "q", "choices": ["a", "b"], "answer": "A", "evidence": "x: 1 || y: 2"},
            {"id": "list", "question": "q", "choices": ["a", "b"], "answer": "A", "evidence": ["z", " "]},
            {"id": "none", "question": "q", "choices": ["a", "b"], "answer": "A"}]
    items = {i.id: i.evidence for i in read_mcq(_jsonl(tmp_path / "m.jsonl", rows))}
    assert items == {"joined": ["x: 1", "y: 2"], "list": ["z"], "none": []}
