"""Small corpora whole: whole files (or whole sections) in the prompt instead of fragments.

    hits, unit = fit_context(model, retriever.search(query, 4), room, retriever, whole_tokens=3000)

A 300-token chunk cut from a short page often leaves out the sentence that answers the question
(the table row under another heading, the note after the code block). When the files the top-k
chunks come from are small enough to fit the prompt budget together, they go in whole: one
document per file, in the rank order of their best chunk. If they do not fit, the sections
(chunks sharing a heading) those chunks belong to are tried whole; if those do not fit either,
the chunks are used as before (prompts.fit_hits).

A file's text is rebuilt from the index's own chunks of that path, in position order, with the
overlap that consecutive chunks of a section share (chunking.py) removed, so no source file has
to be read again and what the prompt holds is what the index holds.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from assistant.chat.prompts import fit_hits
from assistant.rag.hits import Hit

DOC_OVERHEAD = 24  # fence + source line, as prompts.fit_hits counts it
MIN_OVERLAP_CHARS = 12  # a shorter shared stretch is a coincidence, not chunk overlap
MAX_OVERLAP_CHARS = 2000  # far above the 30-token default overlap


def join_chunks(texts: Sequence[str]) -> str:
    """Consecutive chunk texts as one text, each chunk's leading overlap with the previous dropped."""
    out = ""
    for text in texts:
        text = text.strip()
        if out:
            text = text[_overlap(out, text):].lstrip()
            out += "\n\n" + text if text else ""
        else:
            out = text
    return out


def _overlap(prev: str, nxt: str) -> int:
    """Length of the longest start of `nxt` that `prev` ends with (0 when under MIN_OVERLAP_CHARS)."""
    for n in range(min(len(prev), len(nxt), MAX_OVERLAP_CHARS), MIN_OVERLAP_CHARS - 1, -1):
        if prev.endswith(nxt[:n].rstrip()) and nxt[:n].strip():
            if n == len(nxt) or nxt[n].isspace() or not nxt[n - 1].isalnum():  # ends at a word border
                return n
    return 0


def whole_units(retriever, hits: Sequence[Hit], by_section: bool) -> list[Hit]:
    """One Hit per file (or per file section) the hits come from, in the order of their best hit."""
    units: dict[tuple, Hit] = {}
    chunks_of: dict[str, list[Hit]] = {}
    for h in hits:
        key = (h.path, h.heading) if by_section else (h.path,)
        if key in units:
            continue
        if h.path not in chunks_of:
            chunks_of[h.path] = list(retriever.file_hits(h.path)) or [h]
        part = [c for c in chunks_of[h.path] if not by_section or c.heading == h.heading] or [h]
        units[key] = replace(h, heading=h.heading if by_section else "", position=part[0].position,
                             text=join_chunks([c.text for c in part]))
    return list(units.values())


def fit_context(model, hits: Sequence[Hit], budget_tokens: int, retriever=None, whole_tokens: int = 0
                ) -> tuple[list[Hit], str]:
    """(the documents a prompt gets, what they are: "files" | "sections" | "chunks"): whole files,
    else whole sections, when they all fit in min(budget_tokens, whole_tokens); else the hits
    themselves as prompts.fit_hits keeps them."""
    limit = min(budget_tokens, whole_tokens)
    if limit > 0 and hits and hasattr(retriever, "file_hits"):
        for by_section in (False, True):
            units = whole_units(retriever, hits, by_section)
            if sum(model.count_tokens(u.text) + DOC_OVERHEAD for u in units) <= limit:
                return units, "sections" if by_section else "files"
    return fit_hits(model, hits, budget_tokens), "chunks"
