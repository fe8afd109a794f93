"""One strict JSONL reader for every user-supplied file (MCQs, training data, Q&A imports).

Blank lines are skipped; a line that is not JSON, or a file that is not UTF-8, is one clear
OnboardError naming the file and line, never a traceback.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from .errors import OnboardError


def iter_jsonl(path: Path, expect: str = "one JSON object per line") -> Iterator[tuple[int, object]]:
    """Yield (line number, parsed value) for each non-blank line of `path`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except ValueError as e:
                    msg = getattr(e, "msg", "bad JSON")
                    raise OnboardError(f"{path}:{n}: not valid JSON ({msg}; expected {expect})") from None
    except UnicodeDecodeError:
        raise OnboardError(f"{path} is not UTF-8 text") from None
