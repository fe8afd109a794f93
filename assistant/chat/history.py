"""Conversation history: one JSON file per chat under $ONBOARD_HOME/history/.

    store = HistoryStore(settings.home / "history")
    conv = Conversation.new()
    conv.turns.append(Turn(question="...", answer="...", mode="rag", model="smollm2-135m"))
    store.save(conv)                      # atomic: temp file + os.replace
    for summary in store.list(): ...      # newest first
    conv = store.load(summary.id)

A conversation is rewritten whole after each answer (they are small), so a crash or kill -9
leaves either the previous or the new version on disk, never a torn file.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.errors import OnboardError
from assistant.files import atomic_write_text

_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


def new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


@dataclass
class Turn:
    question: str
    answer: str = ""
    mode: str = "plain"
    model: str = ""
    index: str = ""
    sources: list = field(default_factory=list)  # Hit.to_dict() rows
    timings: dict = field(default_factory=dict)
    stopped: bool = False
    error: str = ""  # why there is no answer (missing index, model failure); never sent as context
    query: str = ""  # what retrieval searched (the question, or its standalone rewrite: condense.py)
    rating: int = 0  # 1 up, -1 down, 0 none (the feedback store is the durable record)
    answer_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts: float = field(default_factory=time.time)

    @classmethod
    def from_dict(cls, d: dict) -> "Turn":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Conversation:
    id: str
    created: float
    turns: list[Turn] = field(default_factory=list)

    @classmethod
    def new(cls) -> "Conversation":
        return cls(id=new_id(), created=time.time())

    @property
    def title(self) -> str:
        if not self.turns:
            return "(empty chat)"
        q = " ".join(self.turns[0].question.split())
        return q if len(q) <= 60 else q[:59] + "…"

    @property
    def updated(self) -> float:
        return max([self.created, *(t.ts for t in self.turns)])

    def pairs(self) -> list[tuple[str, str]]:
        """(question, answer) pairs for the model's context; unanswered turns are skipped."""
        return [(t.question, t.answer) for t in self.turns if t.answer and not t.error]

    def to_dict(self) -> dict:
        return {"id": self.id, "created": self.created, "title": self.title,
                "turns": [asdict(t) for t in self.turns]}

    @classmethod
    def from_dict(cls, d: dict) -> "Conversation":
        return cls(id=d["id"], created=float(d.get("created", 0)),
                   turns=[Turn.from_dict(t) for t in d.get("turns", [])])


@dataclass
class ConversationSummary:
    id: str
    title: str
    updated: float
    turns: int


class HistoryStore:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, conv_id: str) -> Path:
        if not _ID.match(conv_id):
            raise OnboardError(f"not a conversation id: {conv_id!r}")
        return self.folder / f"{conv_id}.json"

    def save(self, conv: Conversation) -> Path:
        """Write the conversation (skipped while it has no turns: no empty files)."""
        path = self._path(conv.id)
        if conv.turns:
            atomic_write_text(path, json.dumps(conv.to_dict(), ensure_ascii=False, indent=1))
        return path

    def load(self, conv_id: str) -> Conversation:
        path = self._path(conv_id)
        try:
            return Conversation.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise OnboardError(f"no conversation {conv_id} in {self.folder}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise OnboardError(f"conversation file {path} is damaged ({e}); delete it") from None

    def list(self) -> list[ConversationSummary]:
        """Newest first; unreadable files are skipped rather than breaking the browser."""
        out = []
        for path in self.folder.glob("*.json"):
            try:
                conv = Conversation.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            out.append(ConversationSummary(conv.id, conv.title, conv.updated, len(conv.turns)))
        return sorted(out, key=lambda s: s.updated, reverse=True)

    def delete(self, conv_id: str) -> None:
        self._path(conv_id).unlink(missing_ok=True)


def read_history_file(path: str | Path) -> list[tuple[str, str]]:
    """Earlier (question, answer) pairs from a JSON file, for `onboard ask --history`: a list of
    [question, answer] pairs, a list of chat messages ({"role": "user"|"assistant", "content"}), or a
    conversation saved by `onboard chat` (this module's format)."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise OnboardError(f"cannot read history file {path}: {e.strerror}") from None
    except ValueError as e:
        raise OnboardError(f"history file {path} is not valid JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("turns"), list):
        return Conversation.from_dict({"id": "", **data}).pairs()
    if isinstance(data, list) and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                                      for p in data):
        return [(q, a) for q, a in data]
    if isinstance(data, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in data):
        pairs, pending = [], None
        for m in data:
            if m.get("role") == "user":
                pending = m["content"]
            elif m.get("role") == "assistant" and pending is not None:
                pairs.append((pending, m["content"]))
                pending = None
        return pairs
    raise OnboardError(f"history file {path}: expected [[question, answer], ...], a list of chat messages "
                       '({"role": "user", "content": "..."}), or a conversation saved by onboard chat')
