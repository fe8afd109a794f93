"""Multiple-choice items and the one reader for MCQ files (.jsonl or the reference .csv), used by
`onboard eval`, `onboard eval-retrieval` and the build's evaluate stage.

    items = read_mcq("../shared/eval/nitro_mcq_public.jsonl")   # list[MCQItem]

JSONL: one object a line with question, choices ({"A": ...} or a list), answer (letter, 1-based
digit or the option text), optional id, kind, sources (doc paths relative to the corpus) and
evidence (the docs' words that answer it; the evaluation reports whether they reached the prompt).
With choices as a mapping the answer names a key: {"B": .., "C": ..} with answer "C" is the
second option, whatever letter the option ends up with.
CSV: question,a,b,c,d,correct with options written "A. text".
An item that cannot be used (empty option, unknown answer...) is reported with file:line and
skipped, so one bad line does not cost the whole evaluation; a file that is not UTF-8 text or
holds no usable item is one clear error.
"""
from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

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
    evidence: list[str] = field(default_factory=list)  # quotes of the docs that answer it

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


def _item(where: str, id_: str, question, options: list, answer, kind="", sources=(), evidence=()) -> MCQItem:
    options = [str(o).strip() for o in options]
    if not str(question or "").strip():
        raise OnboardError(f"{where}: empty question")
    if not 2 <= len(options) <= len(LETTERS) or not all(options):
        raise OnboardError(f"{where}: need 2-{len(LETTERS)} non-empty options, got {len(options)}")
    # An int is already an option index (a dict's answer resolved by key); anything else is read.
    idx = answer if isinstance(answer, int) and 0 <= answer < len(options) else _letter_index(answer, options)
    if idx is None:
        raise OnboardError(f"{where}: answer {answer!r} is not one of the option letters "
                           f"{LETTERS[:len(options)]}")
    if isinstance(sources, str):
        sources = [s for s in re.split(r"[;|]\s*", sources) if s]
    if isinstance(evidence, str):  # several quotes joined by "||"
        evidence = evidence.split("||")
    return MCQItem(id_, str(question).strip(), options, idx, str(kind or ""), list(sources or []),
                   [str(e).strip() for e in evidence or [] if str(e).strip()])


def _key(k) -> str:
    return str(k).strip().strip("().:").upper()


def _dict_choices(choices: dict, answer) -> tuple[list, object]:
    """Options of a {key: text} mapping in key order, and the answer as an option index when it
    names a key ("C", "c)", "C. text"): matched by key, never by the position a letter would
    have ({"B": .., "C": ..} with answer "C" is the second option). An index, not a digit string:
    an option whose text is "2" must not be mistaken for the answer "2"."""
    keys = sorted(choices, key=lambda k: (len(_key(k)), _key(k)))  # "10" after "9"
    by_key = {_key(k): i for i, k in enumerate(keys)}
    text = str(answer).strip()
    letter = re.match(r"^\(?([A-Ja-j])(?:[).:\s]|$)", text)
    for key in (_key(text), letter.group(1).upper() if letter else None):
        if key in by_key:
            return [choices[k] for k in keys], by_key[key]
    return [choices[k] for k in keys], answer


def _skip(items: list, warn: Callable[[str], None], make: Callable[[], MCQItem]) -> None:
    """Append the item `make` builds, or report why it cannot be used and go on."""
    try:
        items.append(make())
    except OnboardError as e:
        warn(f"{e} (item skipped)")


def read_jsonl(path: Path, warn: Callable[[str], None]) -> list[MCQItem]:
    """One object a line: question, choices ({"A": ..} or a list), answer (letter), optional
    id, kind, sources, evidence (quotes of the docs that answer it: a list, or joined by "||")."""
    items: list[MCQItem] = []
    for n, row in iter_jsonl(path, "one MCQ object per line"):
        _skip(items, warn, lambda: _jsonl_item(path, n, row))
    return items


def _jsonl_item(path: Path, n: int, row) -> MCQItem:
    where = f"{path}:{n}"
    if not isinstance(row, dict):
        raise OnboardError(f"{where}: expected a JSON object")
    choices, answer = row.get("choices", row.get("options")), row.get("answer", "")
    if isinstance(choices, dict):
        options, answer = _dict_choices(choices, answer)
    elif isinstance(choices, list):
        options = choices
    else:
        raise OnboardError(f"{where}: needs 'choices' as {{\"A\": ...}} or a list")
    return _item(where, str(row.get("id", f"{path.stem}-{n}")), row.get("question"),
                 options, answer, row.get("kind", ""), row.get("sources", []), row.get("evidence", []))


_OPTION_PREFIX = re.compile(r"^\s*\(?[A-Ja-j][.)]\s+")


def read_csv(path: Path, warn: Callable[[str], None]) -> list[MCQItem]:
    """Reference format: question,a,b,c,d,correct with options written "A. text"."""
    try:
        return _read_csv(path, warn)
    except UnicodeDecodeError as e:
        raise OnboardError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#x} at offset {e.start}); "
                           "save it as UTF-8") from None
    except csv.Error as e:
        raise OnboardError(f"{path}: malformed CSV ({e})") from None


def _read_csv(path: Path, warn: Callable[[str], None]) -> list[MCQItem]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
        letters = [c for c in "abcdefghij" if c in header]
        answer_col = next((header[c] for c in ("correct", "answer") if c in header), None)
        if "question" not in header or len(letters) < 2 or answer_col is None:
            raise OnboardError(f"{path}: CSV needs columns question,a,b,c,d,correct "
                               f"(found: {', '.join(header) or 'none'})")
        items: list[MCQItem] = []
        for row in reader:
            n = reader.line_num  # the file line the row ends on (rows may span lines)
            options = [_OPTION_PREFIX.sub("", row[header[c]] or "") for c in letters]
            _skip(items, warn, lambda: _item(f"{path}:{n}", row.get("id") or f"{path.stem}-{len(items) + 1}",
                                             row[header["question"]], options, row[answer_col] or ""))
    return items


def _warn_stderr(message: str) -> None:
    print(f"onboard: warning: {message}", file=sys.stderr)


def read_mcq(path: str | Path, warn: Callable[[str], None] = _warn_stderr) -> list[MCQItem]:
    """The usable items of an MCQ file; each unusable one goes to `warn` (file:line: why)."""
    path = Path(path)
    if not path.is_file():
        raise OnboardError(f"MCQ file not found: {path}")
    reader = {".jsonl": read_jsonl, ".json": read_jsonl, ".csv": read_csv}.get(path.suffix.lower())
    if reader is None:
        raise OnboardError(f"{path}: unknown MCQ format; use .jsonl or .csv (question,a,b,c,d,correct)")
    problems: list[str] = []
    items = reader(path, lambda m: (problems.append(m), warn(m)))
    if not items:
        raise OnboardError(f"{path}: no usable questions found" + (f" (first problem: {problems[0]})" if problems else ""))
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise OnboardError(f"{path}: duplicate item ids")
    return items


def general_mcq_path() -> Path:
    """The general-skill retention set shipped with onboard (not about any docs)."""
    return Path(str(resources.files("assistant") / "data" / "general_mcq.jsonl"))
