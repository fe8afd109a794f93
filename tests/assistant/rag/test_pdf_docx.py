"""PDF and DOCX ingest: real files made here (pypdf writes a PDF with a text content stream per
page, python-docx writes a .docx), indexed into a real Chroma index; encrypted, text-less and
broken files are skipped with counted warnings; citations carry the PDF page."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from assistant.chat.prompts import document_blocks
from assistant.rag.documents import SkipFile
from assistant.rag.formats.docx import docx_documents
from assistant.rag.formats.pdf import pdf_documents
from assistant.rag.index import index_path, open_retriever
from assistant.settings import load_settings


def make_pdf(pages: list[str], user_password: str | None = None, owner_password: str | None = None,
             roman_first: int = 0) -> bytes:
    """A PDF with one Helvetica text line per input line on each page ("" = a page with no text,
    as a scan has); optionally encrypted (AES-256) and with the first pages labelled i, ii..."""
    from pypdf import PdfWriter
    from pypdf.constants import PageLabelStyle
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica")}))
    for text in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        if text:
            lines = " ".join(f"({line}) '" for line in text.split("\n"))
            stream = DecodedStreamObject()
            stream.set_data(f"BT /F1 11 Tf 72 740 Td 14 TL {lines} ET".encode("latin-1"))
            page[NameObject("/Contents")] = writer._add_object(stream)
    if roman_first:
        writer.set_page_label(0, roman_first - 1, style=PageLabelStyle.LOWERCASE_ROMAN, start=1)
        writer.set_page_label(roman_first, len(pages) - 1, style=PageLabelStyle.DECIMAL, start=1)
    if user_password is not None:
        writer.encrypt(user_password, owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(broken: bool = False) -> bytes:
    import docx

    d = docx.Document()
    d.add_heading("Operator Manual", 0)
    d.add_heading("Install", 1)
    d.add_paragraph("Download the zanzibar installer and run it once.")
    d.add_paragraph("needs a 64-bit CPU", style="List Bullet")
    d.add_heading("Linux", 2)
    d.add_paragraph("On Linux the zanzibar daemon listens on port 48213 by default.")
    table = d.add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "flag", (0, 1): "default", (1, 0): "--quokka-mode", (1, 1): "off"}.items():
        table.cell(r, c).text = text
    out = io.BytesIO()
    d.save(out)
    data = out.getvalue()
    return data[: len(data) // 2] if broken else data


GUIDE_PAGES = ["Preface\nThis guide covers the frobnicator.",
               "Chapter one\nInstall the frobnicator from the vendor site.",
               "",  # a figure-only page: no text, no Document
               "Chapter two\nThe --ctx-len flag sets the context window of the frobnicator in tokens."]


def test_pdf_pages_labels_and_refs():
    docs = pdf_documents(make_pdf(GUIDE_PAGES, roman_first=1), "guide.pdf")
    assert [d.heading for d in docs] == ["p. i", "p. 1", "p. 3"]  # labels as a viewer shows them
    assert "--ctx-len flag" in docs[-1].text and all(d.kind == "pdf" for d in docs)
    plain = pdf_documents(make_pdf(GUIDE_PAGES), "guide.pdf")
    assert [d.heading for d in plain] == ["p. 1", "p. 2", "p. 4"]
    # an owner password alone (no password to open) does not stop reading
    assert pdf_documents(make_pdf(["Open text"], user_password="", owner_password="owner"), "o.pdf")[0].text == "Open text"


@pytest.mark.parametrize("data, reason", [
    (make_pdf(["Secret plans"], user_password="hunter2"), "encrypted PDF that needs a password"),
    (make_pdf(["", ""]), "no text in its 2 pages (a scanned PDF?)"),
    (make_pdf(GUIDE_PAGES)[:300], "not a readable PDF"),
    (b"", "not a readable PDF"),
])
def test_unreadable_pdfs_raise_skipfile(data, reason):
    with pytest.raises(SkipFile, match=reason.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        pdf_documents(data, "x.pdf")


def test_docx_headings_lists_tables():
    [doc] = docx_documents(make_docx(), "manual.docx")
    assert doc.kind == "docx" and doc.heading == "Operator Manual"
    assert "# Install\n\nDownload the zanzibar installer" in doc.text
    assert "- needs a 64-bit CPU" in doc.text and "## Linux" in doc.text
    assert "| flag | default |\n| --- | --- |\n| --quokka-mode | off |" in doc.text


def _not_docx_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hello.txt", "not a word document")
    return out.getvalue()


@pytest.mark.parametrize("data", [make_docx(broken=True), b"\xd0\xcf\x11\xe0 an old .doc", _not_docx_zip()])
def test_broken_docx_raise_skipfile(data):
    with pytest.raises(SkipFile, match="not a readable .docx"):
        docx_documents(data, "broken.docx")


def _mixed_corpus(folder: Path) -> None:
    folder.mkdir()
    (folder / "guide.pdf").write_bytes(make_pdf(GUIDE_PAGES))
    (folder / "manual.docx").write_bytes(make_docx())
    (folder / "notes.md").write_text("# Notes\n\nThe weather is pleasant in spring.\n", encoding="utf-8")
    (folder / "locked.pdf").write_bytes(make_pdf(["Secret plans"], user_password="hunter2"))
    (folder / "scan.pdf").write_bytes(make_pdf(["", "", ""]))
    (folder / "broken.docx").write_bytes(make_docx(broken=True))


def test_index_pdf_docx_with_page_citations(tmp_path, onboard_home, run_cli):
    settings = load_settings()
    corpus = tmp_path / "docs"
    _mixed_corpus(corpus)
    stats = index_path(settings, corpus, name="mixed", progress=False)
    assert stats.files == 3  # guide.pdf, manual.docx, notes.md
    assert sorted((s["path"], s["reason"].split(" (")[0].split(";")[0]) for s in stats.skipped) == [
        ("broken.docx", "not a readable .docx"), ("locked.pdf", "encrypted PDF that needs a password"),
        ("scan.pdf", "no text in its 3 pages")]

    retriever = open_retriever(settings, "mixed")
    top = retriever.search("Which flag sets the context window of the frobnicator?", 1)[0]
    assert (top.path, top.heading, top.ref) == ("guide.pdf", "p. 4", "guide.pdf p. 4")
    assert '<document source="guide.pdf p. 4">' in document_blocks([top])[0]
    top = retriever.search("What port does the zanzibar daemon listen on under Linux?", 1)[0]
    assert top.ref == "manual.docx#Operator Manual > Install > Linux" and "48213" in top.text
    assert retriever.search("frobnicator install vendor site", 1)[0].ref == "guide.pdf p. 2"

    code, out, err = run_cli("index", str(corpus), "--index", "mixed")  # nothing changed: same warnings
    assert code == 0 and "3 files skipped" in out
    assert "warning: skipped locked.pdf: encrypted PDF" in err and "warning: skipped scan.pdf: no text" in err
    code, out, _ = run_cli("search", "context window flag", "--index", "mixed", "--k", "1", "--json")
    assert code == 0 and '"ref": "guide.pdf p. 4"' in out
