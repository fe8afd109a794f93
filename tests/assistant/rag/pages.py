"""Test helper shared by the rag tests: a small folder of Markdown pages, each a title, an intro
line and a long Details section (long enough to make several chunks)."""
from __future__ import annotations

from pathlib import Path


def write_pages(folder: Path, pages: dict[str, tuple[str, str]]) -> None:
    """pages: file stem -> (intro sentence, sentence repeated 40 times under ## Details)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (intro, filler) in pages.items():
        (folder / f"{name}.md").write_text(f"# {name.title()}\n\n{intro}\n\n## Details\n\n" + filler * 40,
                                           encoding="utf-8")
