"""An index that follows its folder: `onboard index DIR --watch` and the TUI's "index is older
than its folder" check.

    watch_index(settings, Path("docs"), "docs", on_update=print)   # until stop is set / Ctrl+C
    index_staleness(settings, "docs")                               # Staleness(changed=2, ...)

Watching polls the size and mtime of every file onboard could index (a stat per file: ~1 ms
for a few hundred files) instead of using inotify/FSEvents: no dependency, and it works on
network and container mounts where change events do not arrive. After a change it waits until
the folder holds still for `debounce_s` (an editor's save, a git checkout, a copy in progress),
then runs index_path, which is incremental: only changed files are re-read and re-embedded,
chunks of deleted files are removed.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from assistant.errors import OnboardError
from assistant.settings import Settings

WATCH_POLL_S = 1.0
WATCH_DEBOUNCE_S = 0.5


def snapshot(source: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every file under `source` of a type onboard reads."""
    from assistant.rag.ingest import SUPPORTED_EXT, iter_files, rel_path

    out: dict[str, tuple[int, int]] = {}
    for file in iter_files(source):
        if file.suffix.lower() not in SUPPORTED_EXT:
            continue
        try:
            st = os.stat(file)
        except OSError:  # vanished between listing and stat, or a dangling link
            continue
        out[rel_path(file, source)] = (st.st_size, st.st_mtime_ns)
    return out


def watch_index(settings: Settings, source: Path, name: str, on_update: Callable, *,
                on_error: Callable[[str], None] = lambda message: None, stop: threading.Event | None = None,
                poll_s: float = WATCH_POLL_S, debounce_s: float = WATCH_DEBOUNCE_S, progress: bool = False,
                **index_kw) -> None:
    """Index `source` into NAME, then re-index it after every change until `stop` is set.
    `on_update(stats)` follows every run; a failed re-index (say, the folder was emptied) goes to
    `on_error(message)` and watching goes on. The first run raises like `onboard index` does."""
    from assistant.rag.index import index_path

    stop = stop or threading.Event()
    source = Path(source).expanduser()
    if not source.exists():
        raise OnboardError(f"{source} does not exist: pass a docs folder or file, e.g. onboard index ./docs --watch")
    source = source.resolve()
    last = snapshot(source)  # before the first run: a change made during it is seen afterwards
    on_update(index_path(settings, source, name=name, progress=progress, **index_kw))
    while not stop.wait(poll_s):
        current = snapshot(source)
        if current == last:
            continue
        while not stop.wait(debounce_s):  # until the folder holds still
            settled = snapshot(source)
            if settled == current:
                break
            current = settled
        else:
            return
        last = current
        try:
            stats = index_path(settings, source, name=name, progress=False, **index_kw)
        except OnboardError as e:
            on_error(str(e))
            continue
        on_update(stats)


@dataclass
class Staleness:
    """How a folder differs from the index built from it (files of types onboard reads)."""

    changed: int = 0
    added: int = 0
    removed: int = 0

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def describe(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.changed, "changed"), (self.added, "added"),
                                                (self.removed, "removed")) if n]
        return ", ".join(parts) + (" file" if self.changed + self.added + self.removed == 1 else " files")


def index_staleness(settings: Settings, name: str) -> Staleness | None:
    """What changed in NAME's source folder since it was indexed; None when that cannot be told
    (no complete local manifest, or the folder is gone). Costs one stat per file, no reads.

    Changed: an indexed file whose size or mtime differs. Removed: an indexed file that is gone.
    Added: a new file modified after the index was last updated (files that were already there
    and skipped, say a scanned PDF, are older than that and do not count)."""
    from assistant.rag.store import read_manifest

    manifest = read_manifest(settings, name)
    files, updated, source = manifest.get("files"), manifest.get("updated"), manifest.get("source")
    if not manifest.get("complete") or not isinstance(files, dict) or not updated or not source:
        return None
    source = Path(source)
    if not source.exists():
        return None
    now = snapshot(source)
    stale = Staleness()
    for rel, entry in files.items():
        current = now.get(rel)
        if current is None:
            stale.removed += 1
        elif current != (entry.get("size"), entry.get("mtime_ns")):
            stale.changed += 1
    cutoff_ns = int(float(updated) * 1e9)
    stale.added = sum(1 for rel, (_, mtime_ns) in now.items() if rel not in files and mtime_ns > cutoff_ns)
    return stale


def refresh_index(settings: Settings, name: str):
    """Re-index NAME from the folder and with the chunking it was built with (IndexStats)."""
    from assistant.rag.index import index_path
    from assistant.rag.store import read_manifest

    manifest = read_manifest(settings, name)
    if not manifest.get("source"):
        raise OnboardError(f"index {name!r} has no recorded source folder; rebuild it with: onboard index PATH --index {name}")
    config = manifest.get("config") or {}
    return index_path(settings, Path(manifest["source"]), name=name, progress=False,
                      chunk_tokens=config.get("chunk_tokens"), overlap=config.get("overlap"))
