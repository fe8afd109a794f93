"""The retrieved-chunk type and the retriever protocol every answer mode searches through."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Protocol

_PAGE_HEADING = re.compile(r"p\. \S+$")  # the heading formats/pdf.py gives each page


@dataclass
class Hit:
    """A retrieved chunk."""

    path: str
    heading: str
    text: str
    score: float = 0.0
    chunk_id: str = ""
    position: int = 0

    @property
    def ref(self) -> str:
        """What citations show: "guide.md#Install > Linux", or "guide.pdf p. 12" for a PDF page."""
        if not self.heading:
            return self.path
        if self.path.lower().endswith(".pdf") and _PAGE_HEADING.match(self.heading):
            return f"{self.path} {self.heading}"
        return f"{self.path}#{self.heading}"

    def to_dict(self) -> dict:
        return {**asdict(self), "ref": self.ref}


class Retriever(Protocol):
    def search(self, query: str, k: int) -> list[Hit]: ...
