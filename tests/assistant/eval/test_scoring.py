"""MCQ evaluation: readers, option shuffling, letter scoring on the real SmolLM2, budgeting."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from assistant.errors import OnboardError
from assistant.eval.mcq import LETTERS, MCQItem, general_mcq_path, read_mcq
from assistant.eval.scoring import LetterScorer, calibrate, evaluate, parse_letter, rotations, shuffled_order, summarize


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_reader_on_public_set(nitro_mcq):
    items = read_mcq(nitro_mcq)
    assert len(items) == 40
    assert all(len(i.options) == 4 and i.sources for i in items)
    assert Counter(i.answer_letter for i in items) == {"A": 10, "B": 10, "C": 10, "D": 10}
    assert items[0].options[items[0].answer] == "localhost:3928"


def test_csv_reader_strips_letter_prefixes_and_reads_correct(tmp_path):
    path = _write(tmp_path / "ref.csv",
                  'question,a,b,c,d,correct\n'
                  '"Which port?","A. 8080","B. 3928","C. 11434","D. 5000",B\n'
                  '"Which key, exactly?","A. model","B. path","C. llama_model_path","D. file",C. llama_model_path\n')
    items = read_mcq(path)
    assert [i.options for i in items][0] == ["8080", "3928", "11434", "5000"]
    assert [i.answer_letter for i in items] == ["B", "C"]
    assert items[1].question == "Which key, exactly?"


@pytest.mark.parametrize("name,text,msg", [
    ("bad.csv", "question,answer\nq,a\n", "question,a,b,c,d,correct"),
    ("bad2.csv", "question,a,b,c,d,correct\nq,A. x,B. y,C. z,D. w,E\n", "not one of the option letters"),
    ("bad.jsonl", '{"question": "q", "choices": {"A": "x", "B": "y"}, "answer": "A"}\n{oops\n', ":2: not valid JSON"),
    ("empty.jsonl", "\n", "no usable questions"),
    ("q.txt", "x", "unknown MCQ format"),
])
def test_reader_errors_are_one_clear_line(tmp_path, name, text, msg):
    with pytest.raises(OnboardError, match=msg.replace("(", r"\(").replace(".", r"\.")):
        read_mcq(_write(tmp_path / name, text))


def test_general_set_is_packaged_and_balanced():
    items = read_mcq(general_mcq_path())
    assert len(items) == 40
    assert Counter(i.answer_letter for i in items) == {L: 10 for L in "ABCD"}
    assert not any(i.sources for i in items)


def test_shuffling_keeps_the_right_answer():
    item = MCQItem("x", "q?", ["right", "w1", "w2", "w3"], 0)
    orders = {shuffled_order(item, seed=0, run=r) for r in range(30)}
    assert len(orders) > 5  # runs really reorder
    for order in orders:
        shown = [item.options[i] for i in order]
        assert shown[order.index(item.answer)] == "right"
        rots = rotations(order)
        # every option sits under every letter exactly once
        assert all(sorted(r[j] for r in rots) == [0, 1, 2, 3] for j in range(4))
    assert shuffled_order(item, 0, 3) == shuffled_order(item, 0, 3)
    assert shuffled_order(item, 0, 3) != shuffled_order(item, 1, 3) or shuffled_order(item, 0, 4) != shuffled_order(item, 1, 4)


def test_parse_letter():
    assert parse_letter("B", 4) == 1
    assert parse_letter(" The answer is C.", 4) == 2
    assert parse_letter("(D) because", 4) == 3
    assert parse_letter("A lot of things", 4) == 0  # a bare leading letter counts, as in the references
    assert parse_letter("none of them", 4) is None
    assert parse_letter("E", 4) is None


def test_calibration_removes_a_constant_letter_prior():
    # the model always prefers C by a margin; the content signal sits on the right letter
    rows = []
    for i, right in enumerate("ABCDABCD"):
        lp = np.log(np.array([0.1, 0.1, 0.7, 0.1]))
        lp[LETTERS.index(right)] += 1.0
        lp -= np.logaddexp.reduce(lp)
        rows.append({"model": "m", "mode": "plain", "run": 0, "single_lp": list(lp), "answer_shown": right})
    calibrate(rows)
    assert sum(r["pred_calibrated"] == r["answer_shown"] for r in rows) == 8
    assert sum(int(np.argmax(r["single_lp"])) == LETTERS.index(r["answer_shown"]) for r in rows) == 2


def test_letter_scores_match_a_fresh_evaluation(smollm):
    """The KV-prefix reuse across option orders must not change the numbers."""
    from assistant.eval.scoring import _messages

    scorer = LetterScorer(smollm)
    item = MCQItem("x", "Which planet is known as the Red Planet?", ["Venus", "Mars", "Jupiter", "Mercury"], 1)
    toks = [scorer.prompt(_messages(item, order, "plain", [])) for order in rotations((0, 1, 2, 3))[:2]]
    reused = [scorer.letter_logprobs(t, 4)[0] for t in toks]
    fresh = []
    for t in toks:
        smollm.llm.n_tokens = 0
        fresh.append(scorer.letter_logprobs(t, 4)[0])
    np.testing.assert_allclose(reused, fresh, atol=2e-3)
    assert all(abs(np.exp(lp).sum() - 1) < 1e-6 for lp in reused)


def test_scoring_is_deterministic_for_a_fixed_seed(smollm):
    items = read_mcq(general_mcq_path())[:2]
    a = evaluate(items, {"smol": smollm}, ["plain"], runs=2, seed=7)
    smollm.chat([{"role": "user", "content": "unrelated"}], max_tokens=4)  # disturb the KV cache
    b = evaluate(items, {"smol": smollm}, ["plain"], runs=2, seed=7)
    assert len({r["order"] for r in a}) > 1
    assert [r["order"] for r in a] == [r["order"] for r in b]
    for key in ("pred_single", "pred_cyclic", "pred_calibrated"):
        assert [r[key] for r in a] == [r[key] for r in b]
    np.testing.assert_allclose([r["single_lp"] for r in a], [r["single_lp"] for r in b], atol=2e-3)
    s = summarize(a)[0]
    assert s["runs"] == 2 and s["items"] == 2 and 0 <= s["cyclic"] <= 1
    assert s["letter_mass"] > 0.2  # the template + instruction make the model answer with a letter


def test_too_long_item_is_reported_not_cut(smollm_gguf):
    from assistant.llm.chat_model import load_chat_model

    small = load_chat_model(smollm_gguf, n_ctx=256, n_threads=1, seed=0)
    long_q = "Consider the following configuration carefully. " * 60 + "Which value is the default?"
    items = [MCQItem("long", long_q, ["1", "2", "3", "4"], 0), MCQItem("short", "What is 2 + 2?", ["3", "4", "5", "6"], 1)]
    rows = evaluate(items, {"small": small}, ["plain"], runs=1)
    by_id = {r["id"]: r for r in rows}
    assert by_id["long"]["too_long"] and by_id["long"]["question_tokens"] > 256
    assert not by_id["long"]["correct_cyclic"] and "pred_single" not in by_id["long"]
    assert not by_id["short"]["too_long"] and "pred_single" in by_id["short"]
    s = summarize(rows)[0]
    assert s["too_long"] == 1 and s["items"] == 2  # counted in the denominator, flagged in the report


def test_rag_without_index_is_a_clear_error(smollm):
    with pytest.raises(OnboardError, match="index"):
        evaluate([MCQItem("x", "q?", ["a", "b"], 0)], {"m": smollm}, ["rag"], runs=1)


def test_results_jsonl_rows_are_json_serialisable(smollm):
    rows = evaluate([MCQItem("x", "What is 2 + 2?", ["3", "4", "5", "6"], 1)], {"m": smollm}, ["plain"], runs=1,
                    generate=True)
    json.dumps(rows)
    assert "pred_generate" in rows[0] and "generated" in rows[0]
