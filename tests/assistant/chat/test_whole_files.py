"""Small corpora whole: a small file goes into the prompt whole when it fits (real Chroma index,
real chunker, real SmolLM2-135M tokenizer and prompt)."""
from __future__ import annotations

import pytest

from assistant.chat.modes import AnswerJob
from assistant.chat.whole_files import fit_context, join_chunks
from assistant.rag.chunking import chunk_documents
from assistant.rag.documents import Document
from assistant.rag.index import index_path, open_retriever
from assistant.settings import load_settings

PARAGRAPHS = [
    f"Step {i}: the zebra server reads setting number {i} from zebra.toml, and the value {i * 7} "
    f"is what it uses when the setting is missing; restart the server after changing it." for i in range(1, 13)
]
SMALL = "# Zebra settings\n\n## Reading\n\n" + "\n\n".join(PARAGRAPHS[:6]) + "\n\n## Defaults\n\n" + \
    "\n\n".join(PARAGRAPHS[6:]) + "\n"


def _words(text: str) -> list[str]:
    return text.split()


def test_join_chunks_drops_the_overlap():
    chunks = chunk_documents([Document(path="small.md", text=SMALL, kind="markdown")], 64, 24)
    assert len(chunks) > 3 and sum(len(c.text) for c in chunks) > len(SMALL)  # overlapping pieces
    joined = join_chunks([c.text for c in chunks])
    assert _words(joined) == _words(SMALL)


@pytest.fixture
def small_index(onboard_home, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "small.md").write_text(SMALL, encoding="utf-8")
    (docs / "other.md").write_text("# Other\n\nThe giraffe client has no settings file.\n", encoding="utf-8")
    settings = load_settings()
    index_path(settings, docs, name="small", chunk_tokens=64, overlap=24, progress=False)
    return open_retriever(settings, "small", progress=False)


def test_whole_file_goes_into_the_prompt(smollm, small_index):
    question = "What value does the zebra server use when setting number 9 is missing?"
    job = AnswerJob(question, smollm, mode="rag", retriever=small_index, k=2, max_tokens=8, temperature=0.0,
                    whole_files_tokens=3000)
    sources = job.prepare()
    assert [s.path for s in sources][0] == "small.md" and sources[0].heading == ""
    prompt = job.messages[-1]["content"]
    assert all(p in prompt for p in PARAGRAPHS)  # every paragraph, each once
    assert all(prompt.count(p) == 1 for p in PARAGRAPHS)

    chunks = AnswerJob(question, smollm, mode="rag", retriever=small_index, k=2, max_tokens=8, temperature=0.0)
    chunks.prepare()
    assert not all(p in chunks.messages[-1]["content"] for p in PARAGRAPHS)  # off: fragments only


def test_budget_decides_files_sections_or_chunks(smollm, small_index):
    hits = small_index.search("setting number 9 default value", 2)
    file_tokens = smollm.count_tokens(SMALL)
    kept, unit = fit_context(smollm, hits, 4000, small_index, whole_tokens=file_tokens + 200)
    assert unit == "files"
    kept, unit = fit_context(smollm, hits, 4000, small_index, whole_tokens=file_tokens // 2 + 60)
    assert unit == "sections" and all(h.heading for h in kept)
    assert any(all(p in h.text for p in PARAGRAPHS[6:]) for h in kept)  # the Defaults section, whole
    kept, unit = fit_context(smollm, hits, 4000, small_index, whole_tokens=40)
    assert unit == "chunks" and [h.text for h in kept] == [h.text for h in hits]
