"""Known corpora: fetch a reference docs set at a pinned commit and index it under its name.

    onboard corpus get nitro                                  # online: shallow git fetch
    onboard corpus get nitro --from ../shared/corpora/nitro/docs   # offline: a local copy

The files are copied under $ONBOARD_HOME/corpora/NAME (atomically: a temp folder renamed into
place) so the index keeps a stable source for incremental re-indexing. Corpora are fetched,
never shipped: the Nitro docs are AGPL-3.0.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import OnboardError
from assistant.settings import Settings


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    repo: str
    commit: str
    folder: str
    license: str
    description: str


KNOWN_CORPORA = {
    "nitro": CorpusSpec(
        name="nitro", repo="https://github.com/janhq/cortex.cpp.git",
        commit="f77e31328e05540b68188206f3945de1a94e6d4c", folder="docs", license="AGPL-3.0",
        description="Nitro (Jan's inference server, now cortex.cpp) documentation: the reference target",
    ),
}


def corpus_dir(settings: Settings, name: str) -> Path:
    return settings.home / "corpora" / name


def _spec(name: str) -> CorpusSpec:
    if name not in KNOWN_CORPORA:
        raise OnboardError(f"unknown corpus {name!r}; known corpora: {', '.join(KNOWN_CORPORA)} "
                           "(index any folder with: onboard index PATH --index NAME)")
    return KNOWN_CORPORA[name]


def _copy_local(src: Path, dst: Path) -> None:
    src = Path(src).expanduser()
    if not src.is_dir():
        raise OnboardError(f"--from {src}: not a folder; pass a local copy of the docs folder")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".*", "node_modules"), symlinks=False,
                    ignore_dangling_symlinks=True)


def _git(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    except FileNotFoundError:
        raise OnboardError("git is not installed; install git, or pass a local copy with --from DIR") from None
    except subprocess.TimeoutExpired:
        raise OnboardError("git timed out; pass a local copy with --from DIR") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise OnboardError(f"git {args[0]} failed ({last}); offline, pass a local copy with --from DIR")


def _fetch_git(spec: CorpusSpec, dst: Path) -> None:
    """Shallow, blob-less fetch of one commit, then check out only the docs folder."""
    repo = os.environ.get(f"ONBOARD_{spec.name.upper()}_REPO", spec.repo)
    work = dst.with_name(dst.name + ".git-tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _git(["init", "-q"], work)
        _git(["remote", "add", "origin", repo], work)
        _git(["fetch", "-q", "--depth", "1", "--filter=blob:none", "origin", spec.commit], work)
        _git(["checkout", "-q", "FETCH_HEAD", "--", spec.folder], work)
        (work / spec.folder).rename(dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def get_corpus(settings: Settings, name: str, from_dir: Path | None = None, progress: bool = True):
    """Fetch (or copy) corpus NAME and index it as index NAME; returns (folder, IndexStats)."""
    from assistant.rag.index import index_path

    spec = _spec(name)
    target = corpus_dir(settings, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent)) / "docs"
    try:
        if from_dir is not None:
            _copy_local(Path(from_dir), tmp)
        else:
            _fetch_git(spec, tmp)
        if not any(p.is_file() for p in tmp.rglob("*")):
            raise OnboardError(f"corpus {name}: the source folder is empty")
        origin = {"name": name, "license": spec.license, "commit": spec.commit, "repo": spec.repo,
                  "folder": spec.folder, "from": str(Path(from_dir).resolve()) if from_dir else spec.repo}
        (tmp.parent / "origin.json").write_text(json.dumps(origin, indent=2), encoding="utf-8")
        old = target.with_name(f".{name}-old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp.parent, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    stats = index_path(settings, target / "docs", name=name, progress=progress)
    return target / "docs", stats


