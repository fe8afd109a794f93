"""Feedback store (SQLite, WAL), the DPO pair rule, and `onboard feedback export|stats`."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from assistant.chat.feedback import FeedbackStore, dpo_pairs, dpo_row, export_dpo, feedback_stats
from assistant.errors import OnboardError


@pytest.fixture
def store(onboard_home) -> FeedbackStore:
    return FeedbackStore(onboard_home / "feedback.sqlite")


def test_record_is_wal_and_rerating_overwrites(store):
    store.record("a1", prompt="Q?", answer="A", rating=1, model="m", mode="rag", sources=["x.md#H"])
    store.record("a1", prompt="Q?", answer="A", rating=-1, correction="  better  ")
    rows = store.rows()
    assert len(rows) == 1 and rows[0].rating == -1 and rows[0].correction == "better"
    assert rows[0].sources == ["x.md#H"] and rows[0].mode == "rag"
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("kw,needle", [({"rating": 0}, "rating must be"), ({"answer_id": ""}, "needs the id")])
def test_record_bad_input(store, kw, needle):
    args = {"answer_id": "a", "prompt": "Q", "answer": "A", "rating": 1, **kw}
    with pytest.raises(OnboardError, match=needle):
        store.record(args.pop("answer_id"), **args)


def test_damaged_store_is_one_clear_error(onboard_home):
    bad = onboard_home / "feedback.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OnboardError, match="unreadable"):
        FeedbackStore(bad)


def test_dpo_rule(store):
    store.record("d1", prompt="How do I install?", answer="Use npm.", rating=-1, correction="Use pip install x.")
    store.record("u1", prompt="how do I  install?", answer="Run pip install x.", rating=1)  # same prompt, normalised
    store.record("d2", prompt="Port?", answer="80", rating=-1)  # no correction, no up-vote: no pair
    store.record("u2", prompt="Threads?", answer="Four.", rating=1)  # lone up-vote: no pair
    store.record("d3", prompt="Same?", answer="X", rating=-1, correction="X")  # chosen == rejected: dropped
    pairs = dpo_pairs(store.rows())
    assert pairs == [
        dpo_row("How do I install?", "Use pip install x.", "Use npm."),
        dpo_row("How do I install?", "Run pip install x.", "Use npm."),
    ]
    assert pairs[0]["prompt"][1] == {"role": "user", "content": "How do I install?"}
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": "Use pip install x."}]
    stats = feedback_stats(store)
    assert (stats["total"], stats["up"], stats["down"], stats["corrections"], stats["dpo_pairs"]) == (5, 2, 3, 2, 2)
    assert stats["prompts"] == 4


def test_export_is_atomic_jsonl(store, tmp_path):
    store.record("d1", prompt="Q", answer="bad", rating=-1, correction="good")
    out = tmp_path / "pairs.jsonl"
    out.write_text("old content that must be fully replaced\n")
    assert export_dpo(store, out) == 1
    assert [json.loads(line) for line in out.read_text().splitlines()] == [dpo_row("Q", "good", "bad")]
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_export_and_stats(run_cli, store, tmp_path):
    store.record("d1", prompt="Q", answer="bad", rating=-1, correction="good", model="smollm2-135m", mode="plain")
    out = tmp_path / "dpo.jsonl"
    code, stdout, err = run_cli("feedback", "export", "--format", "dpo", "-o", str(out))
    assert code == 0, err
    assert "1 preference pairs" in stdout and json.loads(out.read_text())["chosen"][0]["content"] == "good"
    code, stdout, _ = run_cli("feedback", "export", "-o", "-")
    assert json.loads(stdout) == dpo_row("Q", "good", "bad")
    code, stdout, _ = run_cli("feedback", "stats", "--json")
    assert json.loads(stdout)["down"] == 1
    code, stdout, _ = run_cli("feedback", "stats")
    assert code == 0 and "1 rated answers" in stdout and "smollm2-135m · plain" in stdout


@pytest.mark.parametrize("argv,needle", [
    (["feedback", "export", "--format", "csv", "-o", "x"], "unknown export format"),
    (["feedback", "export"], "no feedback yet"),
])
def test_cli_bad_input(run_cli, argv, needle):
    code, _, err = run_cli(*argv)
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1


def test_two_processes_writing_at_once_lose_nothing(onboard_home):
    """Two real processes insert 150 ratings each, concurrently, into one store."""
    db = onboard_home / "feedback.sqlite"
    FeedbackStore(db)
    writer = textwrap.dedent(f"""
        import sys, time
        from assistant.chat.feedback import FeedbackStore
        tag = sys.argv[1]
        store = FeedbackStore({str(db)!r})
        while time.time() < float(sys.argv[2]):  # start together
            time.sleep(0.001)
        for i in range(150):
            store.record(f"{{tag}}-{{i}}", prompt=f"q{{i}}", answer=f"{{tag}} answer {{i}}",
                         rating=1 if i % 2 else -1, correction="fix" if i % 3 == 0 else "")
    """)

    start_at = str(time.time() + 1.5)
    procs = [subprocess.Popen([sys.executable, "-c", writer, tag, start_at], stderr=subprocess.PIPE, text=True)
             for tag in ("p1", "p2")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rows = FeedbackStore(db).rows()
    ids = {r.answer_id for r in rows}
    assert len(rows) == 300 and ids == {f"{t}-{i}" for t in ("p1", "p2") for i in range(150)}
