"""Ingest: every supported format, and bad inputs that must be skipped with a counted warning."""
from __future__ import annotations

import json
import os
import tracemalloc

import pytest

from assistant.errors import OnboardError
from assistant.rag.ingest import load_documents


def test_nitro_docs_load(nitro_docs):
    docs, report = load_documents(nitro_docs)
    paths = {d.path for d in docs}
    assert "docs/new/install.md" in paths and "openapi/NitroAPI.yaml" in paths
    assert report.files_loaded >= 29 and not report.skipped
    install = next(d for d in docs if d.path == "docs/new/install.md")
    assert install.heading == "Installation"  # front matter title
    assert "slug:" not in install.text  # front matter dropped
    chat = next(d for d in docs if d.path == "docs/features/chat.md")
    assert "<div" not in chat.text and "curl http://localhost:3928/v1/chat/completions" in chat.text
    ops = [d for d in docs if d.kind == "openapi"]
    load = next(d for d in ops if "POST /inferences/llamacpp/loadmodel" in d.heading)
    assert "`ngl` (number, default 100" in load.text and "LoadModelRequest" in load.text
    assert len(ops) == 7  # overview + 6 operations


def test_formats(tmp_path):
    (tmp_path / "guide.mdx").write_text(
        "---\ntitle: Guide\n---\nimport Tabs from '@theme/Tabs';\n\n# Setup\n<Tabs>\n<TabItem value=\"a\">\n"
        "Run the tool.\n</TabItem>\n</Tabs>\n\n```js\nconst x = <b>1</b>;\n```\n", encoding="utf-8")
    (tmp_path / "ref.rst").write_text(
        "Reference\n=========\n\nIntro text.\n\nOptions\n-------\n\n.. code-block:: bash\n\n   tool --fast\n",
        encoding="utf-8")
    (tmp_path / "page.html").write_text(
        "<html><head><title>T</title><script>evil()</script></head><body><nav>menu</nav><div role='main'>"
        "<h1>Page</h1><p>Hello <b>world</b>.</p><h2>Code</h2><pre>def f():\n    return 1</pre></div></body></html>",
        encoding="utf-8")
    (tmp_path / "notes.txt").write_text("plain notes", encoding="utf-8")
    (tmp_path / "api.json").write_text(json.dumps({
        "openapi": "3.0.0", "info": {"title": "Pets"},
        "paths": {"/pets": {"get": {"summary": "List pets", "parameters": [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 20}}]}}}}), encoding="utf-8")
    (tmp_path / "config.yaml").write_text("a: 1\n", encoding="utf-8")  # not OpenAPI: ignored
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # not a doc type: ignored
    docs, report = load_documents(tmp_path)
    by = {d.path: d for d in docs}
    mdx = by["guide.mdx"]
    assert mdx.heading == "Guide" and "import" not in mdx.text and "<Tabs>" not in mdx.text
    assert "Run the tool." in mdx.text and "const x = <b>1</b>;" in mdx.text  # code kept verbatim
    assert "# Reference" in by["ref.rst"].text and "## Options" in by["ref.rst"].text
    assert "```bash\ntool --fast\n```" in by["ref.rst"].text
    html = by["page.html"].text
    assert "# Page" in html and "Hello world" in html and "evil" not in html and "menu" not in html
    assert "def f():\n    return 1" in html
    assert by["notes.txt"].kind == "text"
    pets = [d for d in docs if d.path == "api.json" and "GET /pets" in d.heading][0]
    assert "`limit` (integer, default 20)" in pets.text
    assert report.ignored == 2 and not report.skipped


def test_single_file(nitro_docs):
    docs, report = load_documents(nitro_docs / "docs" / "new" / "faq.md")
    assert len(docs) == 1 and docs[0].path == "faq.md" and report.files_seen == 1


def _unreadable(folder):
    """One unreadable entry that works even as root: a dangling symlink, a FIFO (opening it
    would block forever) and, when not root, a chmod 000 file."""
    (folder / "dangling.md").symlink_to(folder / "missing-target.md")
    os.mkfifo(folder / "pipe.md")
    names = {"dangling.md", "pipe.md"}
    if os.geteuid() != 0:
        locked = folder / "locked.md"
        locked.write_text("# secret", encoding="utf-8")
        locked.chmod(0)
        names.add("locked.md")
    return names


def test_bad_files_are_skipped_with_warnings(tmp_path):
    (tmp_path / "good.md").write_text("# Good\n\nUseful text.", encoding="utf-8")
    (tmp_path / "blob.md").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    bad = _unreadable(tmp_path) | {"blob.md", "latin1.txt"}
    docs, report = load_documents(tmp_path)
    assert [d.path for d in docs] == ["good.md"]
    reasons = dict(report.skipped)
    assert set(reasons) == bad and len(report.warnings) == len(bad)
    assert reasons["blob.md"] == "binary file" and "UTF-8" in reasons["latin1.txt"]
    assert "unreadable" in reasons["dangling.md"] and reasons["pipe.md"] == "not a regular file"


def test_50mb_file_bounded_memory(tmp_path):
    (tmp_path / "ok.md").write_text("# Fine\n\nSmall doc.", encoding="utf-8")
    big = tmp_path / "huge.txt"
    with open(big, "w", encoding="utf-8") as f:
        line = "the quick brown fox jumps over the lazy dog " * 20 + "\n"
        for _ in range(50_000_000 // len(line) + 1):
            f.write(line)
    assert big.stat().st_size >= 50_000_000
    tracemalloc.start()
    docs, report = load_documents(tmp_path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [d.path for d in docs] == ["ok.md"]
    assert "over the 20 MB limit" in dict(report.skipped)["huge.txt"]
    assert peak < 5_000_000, f"peak {peak / 1e6:.1f} MB while skipping a 50 MB file"


def test_empty_and_missing(tmp_path):
    with pytest.raises(OnboardError, match="no documents found"):
        load_documents(tmp_path)
    (tmp_path / "only.bin").write_bytes(b"\x00" * 10)
    (tmp_path / "x.md").write_bytes(b"\x00\xff" * 10)
    with pytest.raises(OnboardError, match=r"no documents found .*1 skipped: binary file"):
        load_documents(tmp_path)
    with pytest.raises(OnboardError, match="does not exist"):
        load_documents(tmp_path / "nope")


def test_ingest_stays_inside_the_folder(tmp_path):
    """Issue 20, defect 7: a link to a file outside the folder was followed and made searchable;
    linked folders were skipped without a word."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nthe password is hunter2\n")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.md").write_text("# Guide\n\nInstall it.\n")
    os.symlink(outside / "secret.md", docs / "leak.md")
    os.symlink(docs / "guide.md", docs / "sub" / "alias.md")  # inside the folder: followed
    os.symlink(outside, docs / "linked")
    got, report = load_documents(docs)
    assert sorted(d.path for d in got) == ["guide.md", "sub/alias.md"]
    assert not any("hunter2" in d.text for d in got)
    reasons = dict(report.skipped)
    assert "outside the folder" in reasons["leak.md"] and "linked folder" in reasons["linked"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_folder_is_reported(tmp_path):
    docs = tmp_path / "docs"
    (docs / "locked").mkdir(parents=True)
    (docs / "ok.md").write_text("# Ok\n\ntext\n")
    (docs / "locked" / "x.md").write_text("# X\n\ntext\n")
    os.chmod(docs / "locked", 0)
    try:
        _, report = load_documents(docs)
    finally:
        os.chmod(docs / "locked", 0o755)
    assert "unreadable folder" in dict(report.skipped)["locked"]
