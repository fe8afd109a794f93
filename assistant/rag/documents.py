"""What ingest produces: plain-text Documents, the report of what was read or skipped, and the
exception a format reader raises to skip one file with a reason."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Document:
    """One unit of text to chunk. `path` is relative to the corpus root (posix slashes)."""

    path: str
    text: str
    kind: str  # markdown | rst | html | text | openapi | pdf | docx
    heading: str = ""  # heading path prefix for every chunk (page title, API operation, PDF "p. 12")


@dataclass
class IngestReport:
    root: str = ""
    files_seen: int = 0
    files_loaded: int = 0
    documents: int = 0
    ignored: int = 0  # files of types that are not docs (images, scripts, plain YAML...)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): the warnings

    @property
    def warnings(self) -> list[str]:
        return [f"skipped {p}: {why}" for p, why in self.skipped]

    def to_dict(self) -> dict:
        return {"root": self.root, "files_seen": self.files_seen, "files_loaded": self.files_loaded,
                "documents": self.documents, "ignored": self.ignored,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


class SkipFile(Exception):
    """A file that cannot be ingested; the message is the reason shown to the user."""
