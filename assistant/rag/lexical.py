"""Lexical (BM25) index kept next to the Chroma collection: SQLite FTS5 in
$ONBOARD_HOME/indexes/NAME/lexical.sqlite, holding the same chunk ids.

    lex = LexicalIndex.open(settings, "nitro")
    lex.search("--ctx-len", 20)          # [(chunk_id, bm25 score), ...] best first
    fuse([vector_ids, lexical_ids])      # reciprocal-rank fusion

Why SQLite FTS5 and not an in-memory BM25 matrix: every write is a transaction, so chunks are
added and deleted one batch at a time exactly where Chroma's are (index.py), and a run killed
at any point (kill -9 included) leaves the file at its last committed batch; the next run
compares ids with the collection and repairs the difference (`sync_from_collection`).

Tokenization (`terms`) is done here, not by FTS5: identifiers stay whole - `--ctx-len` ->
`ctx-len`, `/v1/chat/completions` -> `v1/chat/completions`, `llama_model_path`, `3928`,
`localhost:3928` - and also yield their parts (`ctx`, `len`, `chat`, `completions`, camelCase
split), stemmed like prose words, so "context length of the model" and `llama_model_path` both
match. FTS5 then only splits the prepared terms on spaces (its tokenchars keep the joiners).
"""
from __future__ import annotations

import re
import sqlite3
import threading
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from assistant.errors import OnboardError

TERMS_VERSION = "1"  # bump when `terms` changes: the index is then refilled from the collection
JOINERS = "-_./:@#"
# An identifier: alphanumeric runs joined by -_./: (no joiner at either end), or a plain word.
_TOKEN = re.compile(r"[^\W_]+(?:[-_./:@#]+[^\W_]+)*")
_PART = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# Function words: frequent in questions ("how do I ...") and useless for ranking; dropping them
# keeps OR queries short. Deliberately small: "get", "call", "file" and the like stay searchable.
STOPWORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has
have having he her here hers him his how i if in into is it its itself just me more most my no
nor not of off on once only or other our ours out over own same she should so some such than
that the their theirs them then there these they this those through to too under until up very
was we were what when where which while who whom why will with would you your yours
""".split())
# BM25 weights of the two columns: a chunk's heading path and file name describe the whole
# chunk, so a query word there counts more than one in the body (BM25F-style field weight).
HEAD_WEIGHT, BODY_WEIGHT = 2.0, 1.0

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS chunks(rowid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, path TEXT,
                                  heading TEXT, position INTEGER, text TEXT);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(head, body,
    tokenize = "unicode61 remove_diacritics 2 tokenchars '{JOINERS}'");
"""


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: Snowball (Porter 2) English, in C

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _stemmer().stemWord(word)


def _parts(token: str) -> list[str]:
    """Sub-words of an identifier: split at joiners and camelCase, lowercased."""
    out = []
    for piece in _PART.findall(token):
        out += [p.lower() for p in _CAMEL.findall(piece)] if not piece.islower() else [piece]
    return out


def terms(text: str) -> list[str]:
    """Index/query terms of `text`: each identifier whole (lowercased) plus its stemmed parts;
    plain words stemmed; function words and single letters dropped."""
    out: list[str] = []
    for token in _TOKEN.findall(text):
        parts = _parts(token)
        if len(parts) > 1:
            out.append(token.lower())
        for p in parts:
            if p in STOPWORDS or (len(p) == 1 and not p.isdigit()):
                continue
            out.append(_stem(p) if p.isalpha() else p)
    return out


def head_text(path: str, heading: str) -> str:
    """What the head column holds: the file name (without extension) as words and whole, and the
    heading path; a page without headings still has a title here."""
    stem = Path(path).stem
    return f"{stem.replace('-', ' ').replace('_', ' ')} {stem} {heading}"


def fts_query(query: str) -> str | None:
    """An FTS5 OR query over the query's distinct terms (each quoted), or None when none is left."""
    seen = list(dict.fromkeys(terms(query)))
    return " OR ".join(f'"{t}"' for t in seen) if seen else None


RETRIEVAL_MODES = ("vector", "bm25", "fused")


def check_retrieval_mode(mode: str) -> str:
    if mode not in RETRIEVAL_MODES:
        raise OnboardError(f"unknown retrieval mode {mode!r}; choose from: {', '.join(RETRIEVAL_MODES)}")
    return mode


def fuse(rankings: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion (Cormack et al. 2009): score(id) = sum_i w_i / (k + rank_i(id))."""
    scores: dict[str, float] = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[i]
        for rank, cid in enumerate(ranking, 1):
            scores[cid] = scores.get(cid, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


class LexicalIndex:
    """The BM25 side of an index. Rows are written in one transaction per call."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), check_same_thread=False)  # TUI/serve search from workers
        self.lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")  # readers never block the indexer; crash safe
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self.db:
            self.db.executescript(SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='terms_version'").fetchone()
            if row is None or row[0] != TERMS_VERSION:  # built with other terms: start over
                self.db.execute("DELETE FROM chunks")
                self.db.execute("DELETE FROM fts")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('terms_version', ?)", (TERMS_VERSION,))

    @classmethod
    def open(cls, settings, name: str) -> "LexicalIndex":
        from assistant.rag.store import index_dir

        return cls(index_dir(settings, name) / "lexical.sqlite")

    def close(self) -> None:
        self.db.close()

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM chunks")}

    def add(self, rows: Iterable[tuple[str, str, str, int, str]]) -> int:
        """Add (id, path, heading, position, text) rows; ids already present are left as they are."""
        n = 0
        with self.db:
            for cid, path, heading, position, text in rows:
                cur = self.db.execute("INSERT OR IGNORE INTO chunks(id, path, heading, position, text) "
                                      "VALUES (?, ?, ?, ?, ?)", (cid, path, heading, position, text))
                if cur.rowcount:
                    self.db.execute("INSERT INTO fts(rowid, head, body) VALUES (?, ?, ?)",
                                    (cur.lastrowid, " ".join(terms(head_text(path, heading))),
                                     " ".join(terms(text))))
                    n += 1
        return n

    def add_chunks(self, chunks) -> int:
        return self.add((c.id, c.path, c.heading, c.position, c.text) for c in chunks)

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        with self.db:
            for i in range(0, len(ids), 500):
                marks = ",".join("?" * len(ids[i:i + 500]))
                rowids = [r[0] for r in self.db.execute(f"SELECT rowid FROM chunks WHERE id IN ({marks})",
                                                        ids[i:i + 500])]
                self.db.executemany("DELETE FROM fts WHERE rowid = ?", [(r,) for r in rowids])
                self.db.executemany("DELETE FROM chunks WHERE rowid = ?", [(r,) for r in rowids])
        return len(ids)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The k best chunks for `query` by BM25 (higher score is better)."""
        match = fts_query(query)
        if match is None:
            return []
        with self.lock:
            rows = self.db.execute(
                "SELECT c.id, bm25(fts, ?, ?) AS s FROM fts JOIN chunks c ON c.rowid = fts.rowid "
                "WHERE fts MATCH ? ORDER BY s LIMIT ?", (HEAD_WEIGHT, BODY_WEIGHT, match, k)).fetchall()
        return [(cid, round(-s, 4)) for cid, s in rows]  # FTS5's bm25() is negated: lower is better

    def rows(self, ids: Sequence[str]) -> dict[str, tuple]:
        """id -> (text, path, heading, position) for the given ids."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self.lock:
            return {r[0]: r[1:] for r in self.db.execute(
                f"SELECT id, text, path, heading, position FROM chunks WHERE id IN ({marks})", list(ids))}


def sync_from_collection(lex: LexicalIndex, col, keep: set | None = None, skip: set | None = None,
                         delete: bool = True, page: int = 1000) -> tuple[int, int]:
    """Make `lex` hold the chunks of Chroma collection `col` (or only `keep`, the ids the index
    should hold): delete the others, copy missing ones (text and metadata) from the collection,
    except those in `skip` (about to be embedded and added with their batch). Returns (added, deleted).

    A reader passes delete=False: an indexer may be between its Chroma and BM25 writes, and only
    the indexer (which knows the ids it is writing) may delete."""
    have = lex.ids()
    if keep is None:
        keep = set(col.get(include=[])["ids"])
    deleted = lex.delete(have - keep) if delete else 0
    missing = sorted(keep - have - (skip or set()))
    added = 0
    for i in range(0, len(missing), page):
        res = col.get(ids=missing[i:i + page], include=["documents", "metadatas"])
        added += lex.add((cid, str((m or {}).get("path", "")), str((m or {}).get("heading", "")),
                          int((m or {}).get("position", 0)), doc or "")
                         for cid, doc, m in zip(res["ids"], res["documents"], res["metadatas"]))
    return added, deleted
