"""PDF to one Document per page (pypdf), each with the heading "p. N" so chunks and citations
carry their page: `guide.pdf p. 12` (Hit.ref). N is the page label the PDF viewer shows (roman
numerals in a preface included), else the page's position.

Encrypted files open when they need no password to read (an owner password only restricts
printing or copying); the others, files without a text layer (scans) and files pypdf cannot
parse raise SkipFile: counted warnings, never a crash.
"""
from __future__ import annotations

import io
import logging
import re

from assistant.rag.documents import Document, SkipFile

PAGE_PREFIX = "p. "
_WORD = re.compile(r"\w")


def pdf_documents(data: bytes, rel: str) -> list[Document]:
    """One Document per page that has text, in page order."""
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its parse warnings would flood `onboard index`
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise SkipFile("encrypted PDF that needs a password; save a copy without one to index it")
        labels = _page_labels(reader)
        pages = [(labels[i], _clean(page.extract_text() or "")) for i, page in enumerate(reader.pages)]
    except SkipFile:
        raise
    except DependencyError as e:  # an encryption scheme whose crypto library is missing
        raise SkipFile(f"encrypted PDF that cannot be decrypted here ({e})") from None
    except Exception as e:  # malformed PDFs raise many types from inside pypdf; the file is skipped, not the run
        raise SkipFile(f"not a readable PDF ({type(e).__name__}: {str(e)[:80]})") from None
    docs = [Document(rel, text, "pdf", f"{PAGE_PREFIX}{label}") for label, text in pages if _WORD.search(text)]
    if not docs:
        raise SkipFile(f"no text in its {len(pages)} pages (a scanned PDF?); run OCR on it first, "
                       "e.g. ocrmypdf in.pdf out.pdf")
    return docs


def _page_labels(reader) -> list[str]:
    n = len(reader.pages)
    try:
        labels = [str(x).strip() for x in reader.page_labels]
    except Exception:  # a broken /PageLabels tree: the positions are still right
        labels = []
    if len(labels) != n:
        labels = [""] * n
    return [label or str(i + 1) for i, label in enumerate(labels)]


def _clean(text: str) -> str:
    """Extracted text with trailing spaces and blank runs collapsed. A line-end hyphen stays:
    in technical docs it is as often part of an identifier (--ctx-len) as a split word."""
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()
