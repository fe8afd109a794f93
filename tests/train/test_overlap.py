"""Training rows that repeat an evaluation question are found (real MiniLM embeddings) and dropped."""
from __future__ import annotations

import json

import pytest

from assistant.errors import OnboardError
from train.overlap import check_overlap, row_questions
from train.tiny import write_tiny_data


def test_rows_repeating_an_mcq_question_are_dropped_once(tmp_path, run_cli):
    data = write_tiny_data(tmp_path / "data", n=12)
    mcq = tmp_path / "mcq.jsonl"
    mcq.write_text(json.dumps({"id": "q1", "question": "Which port does the server listen on by default?",
                               "choices": {"A": "80", "B": "3928", "C": "8080", "D": "22"}, "answer": "B"}) + "\n")
    rag = {"prompt": [{"role": "user", "content": "Documents:\n[1] x\nQuestion: How do I stop it?"}]}
    assert row_questions(rag) == ["How do I stop it?"]
    report = check_overlap(data, mcq, threshold=0.9)
    assert report["files"]["sft.jsonl"] == {"rows": 12, "overlapping": 1, "kept": 11}
    assert report["files"]["dpo.jsonl"]["overlapping"] == 1 and report["rows_dropped"] == 2
    assert report["closest"][0]["mcq_id"] == "q1" and report["similarity"]["max"] > 0.99
    assert sum(b["questions"] for b in report["similarity"]["histogram"]) == report["questions"]
    assert len((data / "sft.jsonl").read_text().splitlines()) == 11
    assert len((data / "overlap-dropped.jsonl").read_text().splitlines()) == 2
    code, out, err = run_cli("data", "check-overlap", str(data), "--mcq", str(mcq))
    assert code == 0 and "0 overlapping" in out  # nothing left to drop
    with pytest.raises(OnboardError, match="no sft.jsonl"):
        check_overlap(tmp_path, mcq)


def test_a_multiple_choice_row_is_reduced_to_its_question_without_options():
    from assistant.chat.prompts import rag_user_message
    from assistant.eval.scoring import SYSTEM_MCQ_RAG, format_question
    from assistant.rag.hits import Hit
    from train.overlap import FILES

    doc = Hit(path="docs/a.md", heading="", text="Port 3928.", chunk_id="a", position=0)
    user = rag_user_message(format_question("Which port does Nitro use?", ["3928", "8080", "11434", "5000"]), [doc])
    row = {"prompt": [{"role": "system", "content": SYSTEM_MCQ_RAG}, {"role": "user", "content": user}],
           "completion": [{"role": "assistant", "content": "A"}]}
    assert row_questions(row) == ["Which port does Nitro use?"]
    assert "reading.jsonl" in FILES


def test_every_question_of_a_multi_question_row_is_checked(tmp_path):
    from train.mcq_rows import conversation_row

    rows = [conversation_row([("What is the default context length?\n\nA. 1\nB. 2\nC. 3\nD. 4", "B"),
                              ("Which port does the server listen on by default?\n\nA. 80\nB. 3928\nC. 1\nD. 2", "B")],
                             docs=[]),
            conversation_row([("How do I load a model?\n\nA. a\nB. b\nC. c\nD. d", "C"),
                              ("Where are the logs?\n\nA. a\nB. b\nC. c\nD. d", "A")], docs=[])]
    assert row_questions(rows[0]) == ["What is the default context length?",
                                      "Which port does the server listen on by default?"]
    (tmp_path / "reading.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mcq = tmp_path / "mcq.jsonl"
    mcq.write_text(json.dumps({"id": "q1", "question": "Which port does the server listen on by default?",
                               "choices": {"A": "80", "B": "3928", "C": "8080", "D": "22"}, "answer": "B"}) + "\n")
    report = check_overlap(tmp_path, mcq)  # the second question of the first row repeats q1
    assert report["files"]["reading.jsonl"] == {"rows": 2, "overlapping": 1, "kept": 1}
    kept = [json.loads(line) for line in (tmp_path / "reading.jsonl").read_text().splitlines()]
    assert [row_questions(r)[0] for r in kept] == ["How do I load a model?"]
