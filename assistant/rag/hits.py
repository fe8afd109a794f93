"""The retrieved-chunk type and the retriever protocol every answer mode searches through."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol


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
        return f"{self.path}#{self.heading}" if self.heading else self.path

    def to_dict(self) -> dict:
        return {**asdict(self), "ref": self.ref}


class Retriever(Protocol):
    def search(self, query: str, k: int) -> list[Hit]: ...
