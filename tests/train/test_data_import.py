"""`onboard data import`: the reference GPT-4 CSV (and JSONL) into the same trl datasets."""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from assistant.chat.prompts import SYSTEM_RAG
from assistant.errors import OnboardError
from train.data_import import import_qa, read_pairs
from train.mcq_rows import PROSE_STAGE_SHARE

CSV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nitro_qa_gpt4.csv"


@pytest.fixture(scope="module")
def gpt4_csv(tmp_path_factory) -> Path:
    """The first 120 rows of the real CSV (the whole file is 3,000 rows: too slow for the suite)."""
    if not CSV.is_file():
        pytest.skip("../shared/data/nitro_qa_gpt4.csv not present")
    with open(CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:120]
    out = tmp_path_factory.mktemp("csv") / "qa.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["question", "answer"])
        w.writeheader()
        w.writerows(rows)
    return out


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_import_csv_with_corpus_gives_closed_book_and_context_rows(gpt4_csv, nitro_docs, tmp_path):
    corpus = tmp_path / "corpus"  # a few pages of the docs keep chunk embedding quick
    shutil.copytree(nitro_docs / "docs" / "features", corpus)
    s = import_qa(gpt4_csv, tmp_path / "out", corpus=corpus)
    assert s["counts"]["rows"] == 120 and s["filter"]["input"] == 120
    kept = s["filter"]["kept"]
    assert 0 < kept <= 120 and kept + sum(s["filter"]["dropped"].values()) == 120
    assert s["counts"]["matched_to_chunk"] > 60  # the pairs are about these pages
    sft = rows(tmp_path / "out" / "sft.jsonl")
    assert len(sft) == s["counts"]["sft"] == kept + s["counts"]["sft_with_context"]
    assert s["counts"]["sft_with_context"] > 0
    assert all(set(r) == {"prompt", "completion"} and r["prompt"][-1]["role"] == "user" for r in sft)
    dpo = rows(tmp_path / "out" / "dpo.jsonl")
    assert dpo and all(r["chosen"] != r["rejected"] for r in dpo)
    reading, prose = rows(tmp_path / "out" / "reading.jsonl"), rows(tmp_path / "out" / "prose.jsonl")
    assert len(prose) == s["counts"]["prose"] == math.ceil(PROSE_STAGE_SHARE * len(reading))  # a share of them
    chats = [r.get("messages") or r["prompt"] + r["completion"] for r in prose]  # one answer: prompt/completion
    assert all(c[0]["content"] == SYSTEM_RAG for c in chats)  # onboard ask's prompt, no options
    assert all(re.search(r" \[\d\]$", m["content"]) for c in chats for m in c if m["role"] == "assistant")
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["command"] == "data import" and card["source"].endswith("qa.csv")
    assert len(card["corpus"]["sha256"]) == 64


def test_import_jsonl_without_corpus_and_cli(tmp_path, run_cli):
    src = tmp_path / "qa.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"question": "How do I start the Nitro server?", "answer": "Run the nitro binary; it listens on 3928."},
        {"question": "how do i start the nitro server", "answer": "Run nitro."},  # exact duplicate
        {"prompt": "What does the loadmodel endpoint need?", "response": "A llama_model_path and ctx_len."},
    ][:2]) + "\n")
    code, out, err = run_cli("data", "import", str(src), "--out", str(tmp_path / "o"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["filter"] == {**summary["filter"], "input": 2, "kept": 1, "dropped": {"exact_duplicate": 1}}
    assert len(rows(tmp_path / "o" / "sft.jsonl")) == 1 and not (tmp_path / "o" / "dpo.jsonl").exists()
    assert not (tmp_path / "o" / "prose.jsonl").exists()  # no corpus: no answering chunk to cite


def test_bad_import_files_are_clear_errors(tmp_path, run_cli):
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(OnboardError, match="question and answer columns"):
        read_pairs(bad)
    (tmp_path / "x.jsonl").write_text('{"question": "q"\n')
    with pytest.raises(OnboardError, match="x.jsonl:1: not valid JSON"):
        read_pairs(tmp_path / "x.jsonl")
    (tmp_path / "x.parquet").write_text("")
    code, _, err = run_cli("data", "import", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "o"))
    assert code != 0 and err.startswith("onboard: error:") and "use .csv or .jsonl" in err
    code, _, err = run_cli("data", "import", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert code != 0 and "not found" in err
    good = tmp_path / "ok.csv"
    good.write_text("question,answer\nWhich port?,3928\n")
    code, _, err = run_cli("data", "import", str(good), "--out", str(tmp_path / "o"), "--cloze-per-chunk", "4")
    assert code != 0 and err.startswith("onboard: error:") and "needs --corpus" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects it: "invalid choice: 99 (choose from 0, ...)"
        run_cli("data", "import", str(good), "--out", str(tmp_path / "o"), "--cloze-per-chunk", "99")
    assert exit_info.value.code == 2
    assert not (tmp_path / "o" / "sft.jsonl").exists()


def test_read_pairs_keeps_every_answer_of_the_reference_csv():
    """Issue 20, defect 6: 226 of the 3,000 answers lost their line breaks."""
    if not CSV.is_file():
        pytest.skip("../shared/data/nitro_qa_gpt4.csv not present")
    with open(CSV, newline="", encoding="utf-8-sig") as f:
        expected = [row["answer"].strip() for row in csv.DictReader(f)]
    pairs = read_pairs(CSV)
    assert len(pairs) == len(expected) == 3000
    assert [p["answer"] for p in pairs] == expected
    assert sum("\n" in a for a in expected) > 0  # the file does hold multi-line answers


def test_read_pairs_keeps_quoted_line_breaks_and_u2028(tmp_path):
    path = tmp_path / "qa.csv"
    answer = "Run:\r\n\r\n    nitro --port 3928\r\n\nthen\u2028check\u2029/health."
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer"])
        w.writerow(["How do I start it?", answer])
        w.writerow(["Second\u2028question?", "two"])
    pairs = read_pairs(path)
    assert len(pairs) == 2
    assert pairs[0]["answer"] == answer.strip()
    assert pairs[1]["answer"] == "two"
