"""Chunking: real-tokenizer sizes, heading paths, overlap, code blocks kept whole per line."""
from __future__ import annotations

import pytest

from assistant.errors import OnboardError
from assistant.rag.chunking import chunk_documents, get_tokenizer, split_sections
from assistant.rag.ingest import Document, load_documents


@pytest.fixture(scope="module")
def nitro_chunks(nitro_docs):
    docs, _ = load_documents(nitro_docs)
    return chunk_documents(docs)


def test_nitro_chunks_sizes_and_metadata(nitro_chunks):
    tok = get_tokenizer()
    assert tok.name == "smollm2-135m"  # the chat model's real tokenizer
    assert len(nitro_chunks) > 100
    for c in nitro_chunks:
        assert 0 < c.n_tokens <= 300
        assert c.n_tokens == tok.count(c.text)
    assert len({c.id for c in nitro_chunks}) == len(nitro_chunks)
    headings = {c.heading for c in nitro_chunks if c.path == "docs/new/install.md"}
    assert "Installation > Nitro Installation Guide > Installation Instructions > Linux and macOS" in headings
    positions = [c.position for c in nitro_chunks if c.path == "openapi/NitroAPI.yaml"]
    assert positions == list(range(len(positions)))  # one running order per file, across its documents


def test_ids_are_stable(nitro_docs, nitro_chunks):
    docs, _ = load_documents(nitro_docs)
    again = chunk_documents(docs)
    assert [c.id for c in again] == [c.id for c in nitro_chunks]


def test_sections_and_heading_path():
    text = "intro\n\n# Install\n## Linux\napt install x\n\n## Windows\nrun setup.exe\n\n```\n# not a heading\n```\n"
    sections = split_sections(text, "Guide")
    assert [h for h, _ in sections] == ["Guide", "Guide > Install > Linux", "Guide > Install > Windows"]
    assert sections[1][1].startswith("# Install\n## Linux")  # empty parent section folded in
    assert "# not a heading" in sections[2][1]


def test_long_prose_overlap_and_budget():
    text = " ".join(f"Sentence number {i} explains a detail of the system." for i in range(400))
    chunks = chunk_documents([Document("a.md", "# Long\n\n" + text, "markdown")], chunk_tokens=120, overlap=20)
    tok = get_tokenizer()
    assert len(chunks) > 5 and all(c.n_tokens <= 120 for c in chunks)
    for prev, nxt in zip(chunks, chunks[1:]):
        shared = next((n for n in range(len(nxt.text), 10, -1) if prev.text.endswith(nxt.text[:n])), 0)
        assert shared > 10, "consecutive chunks must share an overlap"
        assert tok.count(nxt.text[:shared]) <= 20


def test_code_block_split_on_line_boundaries():
    lines = [f"result_{i} = compute(value_{i}, mode='fast')  # step {i}" for i in range(150)]
    src = "# Code\n\nSetup first.\n\n```python\n" + "\n".join(lines) + "\n```\n\nDone."
    chunks = chunk_documents([Document("c.md", src, "markdown")], chunk_tokens=200, overlap=30)
    assert len(chunks) > 3
    seen = []
    for c in chunks:
        assert c.n_tokens <= 200
        assert c.text.count("```") % 2 == 0, "each code piece is fenced on both sides"
        body = [ln for ln in c.text.split("\n") if ln.startswith("result_")]
        assert all(ln in lines for ln in body), "no code line is cut in the middle"
        seen += body
    assert set(seen) == set(lines)


def test_small_code_block_stays_whole():
    code = "```bash\n" + "\n".join(f"echo step {i}" for i in range(20)) + "\n```"
    prose = "Some words about the topic. " * 25
    chunks = chunk_documents([Document("d.md", f"# T\n\n{prose}\n\n{code}\n\n{prose}", "markdown")], chunk_tokens=200)
    assert any(code in c.text for c in chunks)


def test_bad_parameters():
    doc = [Document("a.md", "text", "markdown")]
    with pytest.raises(OnboardError, match="too small"):
        chunk_documents(doc, chunk_tokens=4)
    with pytest.raises(OnboardError, match="overlap"):
        chunk_documents(doc, chunk_tokens=100, overlap=80)
