"""`onboard index DIR --watch` and the staleness check: a real watcher (thread, short poll) on a
real Chroma index follows edits, additions and deletions; the CLI stops cleanly on Ctrl+C."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from assistant.rag.chunking import chunk_documents
from assistant.rag.index import index_path, open_retriever
from assistant.rag.ingest import load_documents
from assistant.rag.watch import index_staleness, snapshot, watch_index
from assistant.settings import load_settings


def _expected_ids(folder: Path) -> list[str]:
    docs, _ = load_documents(folder)
    return sorted(c.id for c in chunk_documents(docs))


def _stored_ids(settings, name: str) -> list[str]:
    return sorted(open_retriever(settings, name, warm=False).collection.get(include=[])["ids"])


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _corpus(folder: Path) -> None:
    folder.mkdir()
    _write(folder / "alpha.md", "# Alpha\n\nAlpha is about apples and orchards.\n")
    _write(folder / "beta.md", "# Beta\n\nBeta is about bananas in the tropics.\n")
    _write(folder / "picture.png", "not docs")  # not a type onboard reads: never a reason to re-index


def test_snapshot_lists_indexable_files(tmp_path):
    _corpus(tmp_path / "c")
    assert sorted(snapshot(tmp_path / "c")) == ["alpha.md", "beta.md"]


def test_watch_follows_edit_add_delete(tmp_path, onboard_home):
    settings = load_settings()
    corpus = tmp_path / "docs"
    _corpus(corpus)
    updates: queue.Queue = queue.Queue()
    errors: queue.Queue = queue.Queue()
    stop = threading.Event()
    watcher = threading.Thread(target=watch_index, args=(settings, corpus, "watched", updates.put),
                               kwargs={"on_error": errors.put, "stop": stop, "poll_s": 0.05, "debounce_s": 0.15},
                               daemon=True)
    watcher.start()
    try:
        first = updates.get(timeout=120)
        assert first.files == 2 and first.added == first.chunks

        _write(corpus / "alpha.md", "# Alpha\n\nAlpha is now about apricots grown in Armenia.\n")
        edited = updates.get(timeout=30)
        assert edited.files_changed == 1 and edited.added >= 1 and edited.deleted >= 1
        assert _stored_ids(settings, "watched") == _expected_ids(corpus)
        assert "apricots" in open_retriever(settings, "watched").search("apricots Armenia", 1)[0].text

        _write(corpus / "gamma.md", "# Gamma\n\nGamma covers grapes and vineyards.\n")
        added = updates.get(timeout=30)
        assert added.files == 3 and added.files_changed == 1 and added.deleted == 0
        assert open_retriever(settings, "watched").search("grapes vineyards", 1)[0].path == "gamma.md"

        (corpus / "beta.md").unlink()
        deleted = updates.get(timeout=30)
        assert deleted.files == 2 and deleted.added == 0 and deleted.deleted >= 1
        assert _stored_ids(settings, "watched") == _expected_ids(corpus)

        (corpus / "picture.png").write_text("still not docs")  # ignored type: no re-index
        time.sleep(0.5)
        assert updates.empty()

        for name in ("alpha.md", "gamma.md"):  # an emptied folder is a warning, and watching goes on
            (corpus / name).unlink()
        assert "no documents found" in errors.get(timeout=30)
        _write(corpus / "delta.md", "# Delta\n\nDelta is about dates.\n")
        back = updates.get(timeout=30)
        assert back.files == 1 and _stored_ids(settings, "watched") == _expected_ids(corpus)
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()


def test_index_staleness(tmp_path, onboard_home):
    settings = load_settings()
    corpus = tmp_path / "docs"
    _corpus(corpus)
    (corpus / "old-scan.pdf").write_bytes(b"%PDF-1.4 no text")  # skipped at index time: never "added"
    index_path(settings, corpus, name="fresh", progress=False)
    assert not index_staleness(settings, "fresh") and index_staleness(settings, "missing") is None

    _write(corpus / "alpha.md", "# Alpha\n\nChanged text, a different size.\n")
    _write(corpus / "new.md", "# New\n\nA page written after indexing.\n")
    (corpus / "beta.md").unlink()
    stale = index_staleness(settings, "fresh")
    assert (stale.changed, stale.added, stale.removed) == (1, 1, 1)
    assert stale.describe() == "1 changed, 1 added, 1 removed files"

    index_path(settings, corpus, name="fresh", progress=False)
    time.sleep(0.05)  # file mtimes come from a coarse kernel clock
    _write(corpus / "later-scan.pdf", "%PDF-1.4 no text either")  # added and skipped by the next run
    assert index_staleness(settings, "fresh").describe() == "1 added file"
    index_path(settings, corpus, name="fresh", progress=False)  # the run records when it looked
    assert not index_staleness(settings, "fresh")


def test_cli_watch_stops_cleanly_on_ctrl_c(tmp_path, onboard_home):
    corpus = tmp_path / "docs"
    _corpus(corpus)
    onboard = Path(sys.executable).parent / "onboard"
    proc = subprocess.Popen([str(onboard), "index", str(corpus), "--index", "cliwatch", "--watch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout.readline().startswith("index cliwatch: 2 files")
        assert any("watching" in proc.stderr.readline() for _ in range(20))  # then it watches
        _write(corpus / "gamma.md", "# Gamma\n\nGamma covers grapes.\n")
        assert proc.stdout.readline().startswith("index cliwatch: 3 files (1 changed)")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert err.strip().splitlines() == [f"onboard: stopped watching {corpus}; index cliwatch is up to date"]
