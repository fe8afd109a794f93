"""File helpers every layer uses: atomic writes, the one file-hash function, strict JSONL reading.

Atomic writes go to a temp file in the same folder, are fsync'ed, then renamed over the target,
so a kill at any moment leaves either the old file or the new one, never half of one.
JSONL: blank lines are skipped; a line that is not JSON, or a file that is not UTF-8, is one
clear OnboardError naming the file and line, never a traceback.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

from assistant.errors import OnboardError


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


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_version(path: str) -> list[int] | None:
    """(size, mtime) of a model file: a rebuilt model under the same name and path (`onboard
    build` again, `quantize --name` again) must not get the old model's cached answers or
    checkpointed rows."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]
