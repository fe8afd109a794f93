"""Word .docx to markdown-style text (python-docx), in document order: Heading 1-9 paragraphs
become ``#`` headings (so chunks carry "Guide > Install > Linux" like any Markdown page, the
Title paragraph first), list paragraphs ``-`` items, runs of code-styled paragraphs fences,
tables ``| a | b |`` rows.

A file that is not a readable .docx (a renamed .doc, a truncated zip, broken XML) or whose XML
would unpack far beyond its size raises SkipFile: a counted warning, never a crash.
"""
from __future__ import annotations

import io
import re
import zipfile

from assistant.rag.documents import Document, SkipFile

MAX_UNPACKED_BYTES = 256 * 1024 * 1024  # a zip bomb stops here, before any XML is parsed
_HEADING = re.compile(r"^heading ([1-9])$")
_TITLE_MARK = "\0title "
_CODE_STYLE = re.compile(r"code|source|preformatted|verbatim|console", re.IGNORECASE)


def docx_text(data: bytes) -> tuple[str, str]:
    """(title, the body as markdown-style text); "" for what the document lacks."""
    _check_zip(data)
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
        lines: list[str] = []
        code: list[str] = []
        title = ""
        for block in blocks:
            if hasattr(block, "rows"):
                line, is_code = _table(block), False
            else:
                line, is_code = _paragraph(block)
                if line.startswith(_TITLE_MARK):
                    title = title or line[len(_TITLE_MARK):]
                    continue
            if is_code:
                code.append(line)
                continue
            if code:
                lines += ["```", *code, "```", ""]
                code = []
            if line.strip():
                lines += [line, ""]
        if code:
            lines += ["```", *code, "```"]
    except Exception as e:  # python-docx/lxml raise many types on damaged files; the file is skipped, not the run
        raise SkipFile(f"not a readable .docx ({type(e).__name__}: {str(e)[:80]})") from None
    return title, "\n".join(lines).strip()


def docx_documents(data: bytes, rel: str) -> list[Document]:
    title, text = docx_text(data)
    return [Document(rel, text, "docx", title)] if text else []


def _check_zip(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise SkipFile(f"not a readable .docx (not a zip file: {e}); an old .doc must be saved as .docx") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise SkipFile(f"unpacks to {unpacked / 1e6:.0f} MB, over the {MAX_UNPACKED_BYTES / 1e6:.0f} MB limit")


def _heading_level(style) -> int:
    """1-9 for Heading N styles, -1 for Title, also through a custom style based on one; else 0."""
    for _ in range(5):
        if style is None:
            return 0
        name = (style.name or "").strip().lower()
        if name == "title":
            return -1
        m = _HEADING.match(name)
        if m:
            return int(m.group(1))
        style = style.base_style
    return 0


def _paragraph(p) -> tuple[str, bool]:
    """(markdown line, is code) for one paragraph."""
    style = p.style
    text = p.text.replace("\t", "    ")
    name = (style.name or "") if style is not None else ""
    if _CODE_STYLE.search(name):
        return text.rstrip(), True
    text = " ".join(text.split())
    if not text:
        return "", False
    level = _heading_level(style)
    if level < 0:
        return _TITLE_MARK + text, False
    if level:
        return f"{'#' * min(level, 6)} {text}", False
    if name.lower().startswith("list") or p._p.pPr is not None and p._p.pPr.numPr is not None:
        return f"- {text}", False
    return text, False


def _table(table) -> str:
    rows: list[str] = []
    for r, row in enumerate(table.rows):
        cells: list[str] = []
        previous = None
        for cell in row.cells:  # a horizontally merged cell is listed once per grid column
            if cell._tc is not previous:
                cells.append(" ".join(cell.text.split()).replace("|", "\\|"))
            previous = cell._tc
        rows.append("| " + " | ".join(cells) + " |")
        if r == 0:
            rows.append("|" + " --- |" * len(cells))
    return "\n".join(rows)
