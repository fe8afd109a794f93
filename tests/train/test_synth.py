"""Real synthesis on a few chunks of the Nitro docs with the packaged small teacher, kill -9 and
resume in a real subprocess, determinism, config and input errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import train.synth as synth
from assistant.errors import OnboardError
from assistant.settings import load_settings
from train.data_filter import FilterConfig

ROOT = Path(__file__).resolve().parents[2]
# Short strings keep the tiny teacher's grammar-bounded replies to ~60 tokens (test speed).
SMALL_SCHEMA = {**synth.QA_SCHEMA, "properties": {
    "question": {"type": "string", "minLength": 12, "maxLength": 90},
    "answer": {"type": "string", "minLength": 8, "maxLength": 140}}}
# The 135M teacher's answers rarely pass the grounding bar; format checks need some rows.
LENIENT = FilterConfig(min_grounding=0.0, min_answer_chars=1, min_question_chars=1)


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(synth, "QA_SCHEMA", SMALL_SCHEMA)
    monkeypatch.setattr(synth, "STUDENT_MAX_TOKENS", 32)
    monkeypatch.setattr(synth, "REPHRASE_MAX_TOKENS", 64)
    return load_settings(chunk_tokens=100, chunk_overlap=10, n_threads=2)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_synthesize_real_teacher_writes_trl_datasets_and_card(nitro_docs, tmp_path, small):
    out = tmp_path / "data"
    s = synth.synthesize(nitro_docs, out, questions_per_chunk=2, rephrasings=1, distractors=2,
                         p_oracle=1.0, max_chunks=2, settings=small, progress=False,
                         filter_config=LENIENT)
    records = read_jsonl(out / "qa.jsonl")
    assert len(records) == 2 and len({r["chunk_id"] for r in records}) == 2
    assert all(r["asks"] == 3 and r["json_asks"] == 2 for r in records)  # 2 Q&A + 1 rephrasing
    assert s["teacher_stats"]["parse_rate"] == 1.0  # the grammar: every JSON reply parsed
    pairs = [p for r in records for p in r["pairs"]]
    assert len(pairs) == 4 and all(p["kind"] in synth.KINDS and p["student"] for p in pairs)
    assert len({p["kind"] for p in pairs}) >= 2  # kinds rotate

    sft = read_jsonl(out / "sft.jsonl")
    kept = s["filter"]["kept"]
    assert kept >= 1 and len(sft) == 2 * kept == s["counts"]["sft"]
    for row in sft:
        assert set(row) == {"prompt", "completion"}
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert row["completion"][0]["role"] == "assistant" and row["completion"][0]["content"]
    with_ctx = [r for r in sft if "<document" in r["prompt"][1]["content"]]
    assert len(with_ctx) == kept
    for row in with_ctx:  # oracle + 2 distractors, answer cites the oracle (p_oracle=1)
        assert row["prompt"][1]["content"].count("<document source=") == 3
        assert row["completion"][0]["content"].rstrip().endswith(("[1]", "[2]", "[3]"))
    if (out / "dpo.jsonl").exists():
        for row in read_jsonl(out / "dpo.jsonl"):
            assert set(row) == {"prompt", "chosen", "rejected"}
            assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
    card = json.loads((out / "card.json").read_text())
    assert card["teacher"]["name"] == "smollm2-135m" and card["teacher"]["grammar"] is True
    assert len(card["corpus"]["sha256"]) == 64 and card["counts"]["chunks"] == 2
    assert card["settings"]["seed"] == 0 and card["teacher_stats"]["json_asks"] == 4
    assert "Dataset card" in (out / "card.md").read_text()

    # rerun: nothing left to generate, same data; the strict default filter drops made-up answers
    s2 = synth.synthesize(nitro_docs, out, questions_per_chunk=2, rephrasings=1, distractors=2,
                          p_oracle=1.0, max_chunks=2, settings=small, progress=False)
    assert s2["counts"]["generated_now"] == 0 and read_jsonl(out / "qa.jsonl") == records
    assert s2["filter"]["kept"] <= kept
    # other generation settings into the same folder: refused, one clear line
    with pytest.raises(OnboardError, match="questions_per_chunk=2"):
        synth.synthesize(nitro_docs, out, questions_per_chunk=3, max_chunks=2, settings=small, progress=False)


KILL_SCRIPT = """
import sys, train.synth as s
s.QA_SCHEMA = {schema!r}
from assistant.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_then_resume_has_no_duplicates_or_holes(nitro_docs, tmp_path, small, onboard_home):
    out = tmp_path / "run"
    args = [str(nitro_docs), "--out", str(out), "--max-chunks", "4", "--questions", "1",
            "--rephrasings", "0", "--no-student", "--chunk-tokens", "100", "--overlap", "10",
            "--threads", "2", "--json"]
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(schema=SMALL_SCHEMA), "synth", *args],
                            cwd=ROOT, env={**os.environ, "ONBOARD_HOME": str(onboard_home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    qa = out / "qa.jsonl"
    deadline = time.time() + 300
    while not (qa.is_file() and qa.read_bytes().count(b"\n") >= 1):
        assert proc.poll() is None, proc.stderr.read().decode()[-1000:]
        assert time.time() < deadline, "no chunk finished in 300 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = read_jsonl(qa)
    assert 1 <= len(before) < 4
    with open(qa, "ab") as f:  # a torn line, as a kill in the middle of a write leaves
        f.write(b'{"chunk_id": "torn", "pairs": [{"quest')

    s = synth.synthesize(nitro_docs, out, questions_per_chunk=1, rephrasings=0, student=None,
                         max_chunks=4, settings=small, progress=False)
    after = read_jsonl(qa)
    assert after[: len(before)] == before  # finished chunks untouched
    ids = [r["chunk_id"] for r in after]
    from assistant.rag.chunking import chunk_documents
    from assistant.rag.ingest import load_documents

    expected = synth.select_chunks(chunk_documents(load_documents(nitro_docs)[0], 100, 10), 4, 0)
    assert len(ids) == len(set(ids)) == 4 and set(ids) == {c.id for c in expected}
    assert s["counts"]["generated_now"] == 4 - len(before)

    # deterministic: the chunk the killed process wrote comes out the same in this process
    from train.teacher import open_teacher

    chunk = next(c for c in expected if c.id == before[0]["chunk_id"])
    again = synth.synth_chunk(chunk, open_teacher("smollm2-135m", small), None, questions=1,
                              rephrasings=0, seed=0)
    assert again["pairs"] == before[0]["pairs"]


def test_bad_inputs_are_one_line_errors(run_cli, tmp_path):
    code, _, err = run_cli("synth", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert code != 0 and err.startswith("onboard: error:") and "does not exist" in err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.md").write_text("# Title\n\nSome words about the tool that are long enough. " * 10)
    code, _, err = run_cli("synth", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--p-oracle", "2")
    assert code != 0 and "--p-oracle" in err and "Traceback" not in err
    code, _, err = run_cli("synth", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                           "--teacher", "no-such-model")
    assert code != 0 and "unknown model" in err
