"""User scores on answers (thumbs up / down + optional correction), kept for the next DPO round.

    store = FeedbackStore(settings.feedback_db)
    store.record(answer_id, prompt="How do I ...?", answer="...", rating=-1, correction="Use ...")
    pairs = dpo_pairs(store.rows())          # [{"prompt": [msgs], "chosen": [msg], "rejected": [msg]}]
    export_dpo(store, Path("pairs.jsonl"))   # atomic JSONL

SQLite in WAL mode with a busy timeout: the TUI and an `onboard feedback export` (or two TUIs)
can write at the same time without losing rows; every write is its own short IMMEDIATE
transaction, so a killed process loses at most the rating it was writing.

Preference-pair rule (`dpo_pairs`), per prompt (question text, whitespace/case-normalised):
  1. a down-voted answer with a correction   -> chosen = correction, rejected = answer;
  2. an up-voted answer and a down-voted answer to the same prompt
                                              -> chosen = up-voted answer, rejected = down-voted one;
Pairs whose chosen and rejected texts are equal are dropped, duplicates are kept once. Rows are
conversational, like `onboard synth`'s dpo.jsonl: prompt = [system (plain-mode prompt), user
question], chosen / rejected = [assistant message]. Down-votes
without a correction and with no up-voted sibling, and lone up-votes, yield no pair (DPO needs
both sides); they still count in `stats`.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import OnboardError

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    answer_id   TEXT NOT NULL UNIQUE,
    ts          REAL NOT NULL,
    prompt      TEXT NOT NULL,
    answer      TEXT NOT NULL,
    rating      INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    correction  TEXT NOT NULL DEFAULT '',
    model       TEXT NOT NULL DEFAULT '',
    mode        TEXT NOT NULL DEFAULT '',
    sources     TEXT NOT NULL DEFAULT '[]',
    conversation_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS feedback_prompt ON feedback(prompt);
"""
BUSY_TIMEOUT_MS = 30_000


@dataclass
class FeedbackRow:
    id: int
    answer_id: str
    ts: float
    prompt: str
    answer: str
    rating: int
    correction: str
    model: str
    mode: str
    sources: list
    conversation_id: str


class FeedbackStore:
    """One SQLite file; open a connection per call so threads and processes never share one."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise OnboardError(f"feedback store {self.path} is unreadable ({e}); move it aside and retry") from None

    def _connect(self) -> "_Closing":
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a rating the user saw confirmed survives power loss
        return _Closing(db)

    def record(self, answer_id: str, *, prompt: str, answer: str, rating: int, correction: str = "",
               model: str = "", mode: str = "", sources: list | None = None,
               conversation_id: str = "") -> int:
        """Insert or replace the score of one answer (re-rating an answer overwrites it)."""
        if rating not in (-1, 1):
            raise OnboardError(f"rating must be 1 (up) or -1 (down), got {rating!r}")
        if not answer_id:
            raise OnboardError("feedback needs the id of the answer it scores")
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    """INSERT INTO feedback(answer_id, ts, prompt, answer, rating, correction, model, mode,
                                            sources, conversation_id)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(answer_id) DO UPDATE SET ts=excluded.ts, rating=excluded.rating,
                           correction=excluded.correction
                       RETURNING id""",
                    (answer_id, time.time(), prompt, answer, rating, (correction or "").strip(), model,
                     mode, json.dumps(sources or [], ensure_ascii=False), conversation_id),
                )
                row_id = cur.fetchone()[0]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return int(row_id)

    def get(self, answer_id: str) -> FeedbackRow | None:
        rows = self._select("WHERE answer_id = ?", (answer_id,))
        return rows[0] if rows else None

    def rows(self) -> list[FeedbackRow]:
        return self._select("ORDER BY id", ())

    def _select(self, where: str, params: tuple) -> list[FeedbackRow]:
        with self._connect() as db:
            cur = db.execute(
                "SELECT id, answer_id, ts, prompt, answer, rating, correction, model, mode, sources, "
                f"conversation_id FROM feedback {where}", params)
            return [FeedbackRow(*r[:9], json.loads(r[9] or "[]"), r[10]) for r in cur.fetchall()]


class _Closing:
    """sqlite3.Connection as a context manager that closes (the stdlib one only commits)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __getattr__(self, name):
        return getattr(self.db, name)

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc) -> None:
        self.db.close()


def _prompt_key(prompt: str) -> str:
    return " ".join(prompt.split()).casefold()


def dpo_row(prompt: str, chosen: str, rejected: str) -> dict:
    """One pair in the conversational format `onboard synth` writes and train/dpo.py reads."""
    from assistant.chat.prompts import SYSTEM_PLAIN

    return {"prompt": [{"role": "system", "content": SYSTEM_PLAIN}, {"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def dpo_pairs(rows: list[FeedbackRow]) -> list[dict]:
    """Preference pairs from feedback rows; the rule is in the module docstring."""
    groups: dict[str, list[FeedbackRow]] = {}
    for r in rows:
        groups.setdefault(_prompt_key(r.prompt), []).append(r)
    pairs, seen = [], set()

    def add(prompt: str, chosen: str, rejected: str) -> None:
        chosen, rejected = chosen.strip(), rejected.strip()
        if not chosen or not rejected or chosen == rejected or (prompt, chosen, rejected) in seen:
            return
        seen.add((prompt, chosen, rejected))
        pairs.append(dpo_row(prompt, chosen, rejected))

    for group in groups.values():
        prompt = group[0].prompt.strip()
        ups = [r for r in group if r.rating > 0]
        downs = [r for r in group if r.rating < 0]
        for d in downs:
            if d.correction:
                add(prompt, d.correction, d.answer)
            for u in ups:
                add(prompt, u.answer, d.answer)
    return pairs


def export_dpo(store: FeedbackStore, out: Path) -> int:
    """Write prompt/chosen/rejected JSONL atomically; returns the number of pairs."""
    from assistant.files import atomic_write_text

    pairs = dpo_pairs(store.rows())
    atomic_write_text(Path(out), "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    return len(pairs)


def feedback_stats(store: FeedbackStore) -> dict:
    rows = store.rows()
    by: dict[str, dict] = {}
    for r in rows:
        key = f"{r.model or '?'} · {r.mode or '?'}"
        b = by.setdefault(key, {"up": 0, "down": 0, "corrections": 0})
        b["up" if r.rating > 0 else "down"] += 1
        b["corrections"] += bool(r.correction)
    up = sum(r.rating > 0 for r in rows)
    return {
        "total": len(rows), "up": up, "down": len(rows) - up,
        "corrections": sum(bool(r.correction) for r in rows),
        "prompts": len({_prompt_key(r.prompt) for r in rows}),
        "dpo_pairs": len(dpo_pairs(rows)),
        "approval": round(up / len(rows), 3) if rows else None,
        "by_model_mode": by,
        "first": min((r.ts for r in rows), default=None), "last": max((r.ts for r in rows), default=None),
    }
