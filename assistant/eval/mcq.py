"""Multiple-choice items and the one reader for MCQ files (.jsonl or the reference .csv), used by
`onboard eval`, `onboard eval-retrieval` and the build's evaluate stage.

    items = read_mcq("../shared/eval/nitro_mcq_public.jsonl")   # list[MCQItem]

JSONL: one object a line with question, choices ({"A": ...} or a list), answer (letter, 1-based
digit or the option text), optional id, kind and sources (doc paths relative to the corpus).
CSV: question,a,b,c,d,correct with options written "A. text".
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from assistant.errors import OnboardError
from assistant.files import iter_jsonl

LETTERS = "ABCDEFGHIJ"


@dataclass
class MCQItem:
    id: str
    question: str
    options: list[str]
    answer: int  # index into options
    kind: str = ""
    sources: list[str] = field(default_factory=list)

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


def _letter_index(raw, options: list[str]) -> int | None:
    """'B', 'b', 'B.', '(B)', 'B. text', 1-based digits or the option's own text -> index."""
    text = str(raw).strip()
    for i, opt in enumerate(options):
        if text and text == opt.strip():
            return i
    m = re.match(r"^\(?([A-Ja-j])(?:[).:\s]|$)", text)
    if m:
        i = LETTERS.index(m.group(1).upper())
        return i if i < len(options) else None
    if text.isdigit() and 1 <= int(text) <= len(options):
        return int(text) - 1
    return None


def _item(where: str, id_: str, question, options: list, answer, kind="", sources=()) -> MCQItem:
    options = [str(o).strip() for o in options]
    if not str(question or "").strip():
        raise OnboardError(f"{where}: empty question")
    if not 2 <= len(options) <= len(LETTERS) or not all(options):
        raise OnboardError(f"{where}: need 2-{len(LETTERS)} non-empty options, got {len(options)}")
    idx = _letter_index(answer, options)
    if idx is None:
        raise OnboardError(f"{where}: answer {answer!r} is not one of the option letters "
                           f"{LETTERS[:len(options)]}")
    if isinstance(sources, str):
        sources = [s for s in re.split(r"[;|]\s*", sources) if s]
    return MCQItem(id_, str(question).strip(), options, idx, str(kind or ""), list(sources or []))


def read_jsonl(path: Path) -> list[MCQItem]:
    """One object a line: question, choices ({"A": ..} or a list), answer (letter), optional
    id, kind, sources."""
    items = []
    for n, row in iter_jsonl(path, "one MCQ object per line"):
        where = f"{path}:{n}"
        if not isinstance(row, dict):
            raise OnboardError(f"{where}: expected a JSON object")
        choices = row.get("choices", row.get("options"))
        if isinstance(choices, dict):
            keys = sorted(choices, key=lambda k: str(k).upper())
            options = [choices[k] for k in keys]
        elif isinstance(choices, list):
            options = choices
        else:
            raise OnboardError(f"{where}: needs 'choices' as {{\"A\": ...}} or a list")
        items.append(_item(where, str(row.get("id", f"{path.stem}-{n}")), row.get("question"),
                           options, row.get("answer", ""), row.get("kind", ""), row.get("sources", [])))
    return items


_OPTION_PREFIX = re.compile(r"^\s*\(?[A-Ja-j][.)]\s+")


def read_csv(path: Path) -> list[MCQItem]:
    """Reference format: question,a,b,c,d,correct with options written "A. text"."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
        letters = [c for c in "abcdefghij" if c in header]
        answer_col = next((header[c] for c in ("correct", "answer") if c in header), None)
        if "question" not in header or len(letters) < 2 or answer_col is None:
            raise OnboardError(f"{path}: CSV needs columns question,a,b,c,d,correct "
                               f"(found: {', '.join(header) or 'none'})")
        items = []
        for n, row in enumerate(reader, 2):
            options = [_OPTION_PREFIX.sub("", row[header[c]] or "") for c in letters]
            items.append(_item(f"{path}:{n}", row.get("id") or f"{path.stem}-{n - 1}",
                               row[header["question"]], options, row[answer_col] or ""))
    return items


def read_mcq(path: str | Path) -> list[MCQItem]:
    path = Path(path)
    if not path.is_file():
        raise OnboardError(f"MCQ file not found: {path}")
    reader = {".jsonl": read_jsonl, ".json": read_jsonl, ".csv": read_csv}.get(path.suffix.lower())
    if reader is None:
        raise OnboardError(f"{path}: unknown MCQ format; use .jsonl or .csv (question,a,b,c,d,correct)")
    items = reader(path)
    if not items:
        raise OnboardError(f"{path}: no questions found")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise OnboardError(f"{path}: duplicate item ids")
    return items


def general_mcq_path() -> Path:
    """The general-skill retention set shipped with onboard (not about any docs)."""
    return Path(str(resources.files("assistant") / "data" / "general_mcq.jsonl"))
