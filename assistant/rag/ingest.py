"""Ingest a docs folder (or one file) into plain-text Documents ready for chunking.

    from assistant.rag.ingest import load_documents
    docs, report = load_documents(Path("docs"))

Every supported format is normalised to markdown-style text (``#`` headings, fenced code), so
the chunker needs one heading parser; each format has its reader in formats/:
  * Markdown / MDX: front matter becomes the document title; JSX/HTML tags and MDX
    import/export lines are dropped outside code blocks; text and code are kept.
  * reStructuredText: underlined titles become ``#`` headings, ``code-block`` directives fences.
  * HTML: main content only (nav, scripts, footers dropped); h1-h6 headings, <pre> as fences.
  * OpenAPI YAML/JSON: one Document per operation (method, path, summary, parameters and
    request/response fields with defaults, $refs resolved) plus one overview Document.
  * PDF: one Document per page, headed "p. N" so citations read `guide.pdf p. 12`; encrypted
    (password needed) and text-less (scanned) files are skipped with a warning.
  * DOCX: Word headings become ``#`` headings, lists ``-`` items, tables ``|`` rows.
  * Plain text as is.
Binary files, undecodable text, unreadable paths and files over the size limit are skipped
with a counted warning; nothing here raises except for an empty corpus or a missing path.
File size is checked before reading, so memory stays bounded by ``max_file_mb``.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Iterator

from assistant.errors import OnboardError
from assistant.rag.documents import Document, IngestReport, SkipFile
from assistant.rag.formats.docx import docx_documents
from assistant.rag.formats.html import clean_html
from assistant.rag.formats.markdown import clean_markdown
from assistant.rag.formats.openapi import load_structured, openapi_documents
from assistant.rag.formats.pdf import pdf_documents
from assistant.rag.formats.rst import clean_rst

MARKDOWN_EXT = {".md", ".markdown", ".mdx"}
RST_EXT = {".rst"}
TEXT_EXT = {".txt", ".text", ""}
HTML_EXT = {".html", ".htm"}
STRUCTURED_EXT = {".yaml", ".yml", ".json"}
BINARY_DOC_EXT = {".pdf", ".docx"}
SUPPORTED_EXT = MARKDOWN_EXT | RST_EXT | TEXT_EXT | HTML_EXT | STRUCTURED_EXT | BINARY_DOC_EXT
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", "_build", ".ipynb_checkpoints"}
DEFAULT_MAX_FILE_MB = 20.0


# --- walking -------------------------------------------------------------------------------
def iter_files(root: Path, skipped: list[tuple[str, str]] | None = None) -> Iterator[Path]:
    """Every non-hidden file under root, sorted; nothing outside it. What is left out for a
    reason the user should know goes to `skipped` as (path relative to root, reason): links
    to files outside the folder (a hostile link would make any readable file searchable),
    linked folders (not followed: they may lead outside or loop) and unreadable folders."""
    if not root.is_dir():
        yield root
        return
    note = skipped.append if skipped is not None else (lambda item: None)
    real_root = root.resolve()

    def unreadable(e: OSError) -> None:
        where = Path(e.filename) if e.filename else root
        note((rel_path(where, root) if where != root else ".", f"unreadable folder ({e.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = Path(dirpath)
        visible = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for d in visible:
            if (here / d).is_symlink():
                note((rel_path(here / d, root), "linked folder (links are not followed)"))
        dirnames[:] = [d for d in visible if not (here / d).is_symlink()]
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                note((rel_path(path, root), "link to a file outside the folder (not followed)"))
                continue
            yield path


def rel_path(path: Path, root: Path) -> str:
    if root.is_dir():
        return path.relative_to(root).as_posix()
    return path.name


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """Read a regular file of at most max_bytes or raise SkipFile with the reason."""
    try:
        st = os.stat(path)  # follows symlinks: a dangling one fails here
    except OSError as e:
        raise SkipFile(f"unreadable ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SkipFile("not a regular file")  # FIFOs, sockets, devices: opening could block
    if st.st_size > max_bytes:
        raise SkipFile(f"{st.st_size / 1e6:.0f} MB is over the {max_bytes / 1e6:.0f} MB limit per file "
                       "(split it, or raise the limit with --max-file-mb)")
    try:
        with open(path, "rb") as f:
            data = f.read(min(max_bytes, st.st_size) + 1)  # read(n) preallocates n bytes
    except OSError as e:
        raise SkipFile(f"unreadable ({e.strerror})") from None
    return data


def read_text(path: Path, max_bytes: int) -> str:
    """Read a regular file as text or raise SkipFile with the reason."""
    data = read_bytes(path, max_bytes)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise SkipFile("invalid UTF-16 text") from None
    if b"\x00" in data[:8192]:
        raise SkipFile("binary file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SkipFile(f"not valid UTF-8 (byte {e.start}); re-save it as UTF-8") from None


# --- one file --------------------------------------------------------------------------------
def load_file(path: Path, rel: str, max_bytes: int = int(DEFAULT_MAX_FILE_MB * 1e6)) -> list[Document]:
    """Documents of one file; [] for a file type that is not docs; SkipFile for a bad file."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXT:
        return []
    if suffix in BINARY_DOC_EXT:
        data = read_bytes(path, max_bytes)
        return pdf_documents(data, rel) if suffix == ".pdf" else docx_documents(data, rel)
    text = read_text(path, max_bytes)
    if suffix in MARKDOWN_EXT:
        title, body = clean_markdown(text)
        return [Document(rel, body, "markdown", title)] if body.strip() else []
    if suffix in RST_EXT:
        return [Document(rel, clean_rst(text), "rst")] if text.strip() else []
    if suffix in HTML_EXT:
        title, body = clean_html(text)
        has_h1 = re.search(r"^# ", body, re.MULTILINE) is not None
        return [Document(rel, body, "html", "" if has_h1 else title)] if body.strip() else []
    if suffix in STRUCTURED_EXT:
        data = load_structured(text, suffix)
        if isinstance(data, dict) and ("openapi" in data or "swagger" in data) and isinstance(data.get("paths"), dict):
            return openapi_documents(data, rel)
        return []  # plain config/data files are not docs
    return [Document(rel, text.strip(), "text")] if text.strip() else []


def load_documents(path: Path, max_file_mb: float = DEFAULT_MAX_FILE_MB) -> tuple[list[Document], IngestReport]:
    """All Documents under `path` (a folder or one file) and a report of what was skipped."""
    path = Path(path).expanduser()
    if not path.exists() and not path.is_symlink():
        raise OnboardError(f"{path} does not exist: pass a docs folder or file, e.g. onboard index ./docs")
    report = IngestReport(root=str(path))
    docs: list[Document] = []
    max_bytes = int(max_file_mb * 1e6)
    for file in iter_files(path, report.skipped):
        report.files_seen += 1
        rel = rel_path(file, path)
        try:
            got = load_file(file, rel, max_bytes)
        except SkipFile as e:
            report.skipped.append((rel, str(e)))
            continue
        if got:
            report.files_loaded += 1
            docs.extend(got)
        else:
            report.ignored += 1
    report.documents = len(docs)
    if not docs:
        raise OnboardError(empty_corpus_message(path, report))
    return docs, report


def empty_corpus_message(path: Path, report: IngestReport) -> str:
    why = f" ({len(report.skipped)} skipped: {report.skipped[0][1]}{', ...' if len(report.skipped) > 1 else ''})" \
        if report.skipped else ""
    return (f"no documents found in {path}{why}: onboard reads .md, .mdx, .rst, .txt, .html, .pdf, "
            f".docx and OpenAPI .yaml/.json files")
