"""HTML to markdown-style text: main content only (nav, scripts, footers dropped), h1-h6 as
``#`` headings, <pre> as fences."""
from __future__ import annotations

import re

# --- HTML ----------------------------------------------------------------------------------
_HTML_DROP = ("script", "style", "nav", "header", "footer", "noscript", "svg", "form", "button", "template")


_BLOCK = {"p", "div", "section", "article", "main", "li", "dt", "dd", "tr", "table", "ul", "ol", "dl",
          "blockquote", "figure", "figcaption", "br", "hr", "aside", "details", "summary"}


def clean_html(text: str) -> tuple[str, str]:
    """HTML -> (title, markdown-ish text) keeping headings and code blocks."""
    from bs4 import BeautifulSoup, NavigableString, Tag

    soup = BeautifulSoup(text, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_HTML_DROP):
        tag.decompose()
    for tag in soup.select('a.headerlink, [role="navigation"], .sphinxsidebar, .related, #searchbox'):
        tag.decompose()
    root = soup.select_one('[role="main"]') or soup.find("main") or soup.find("article") or soup.body or soup
    parts: list[str] = []

    def walk(node) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if child.__class__.__name__ in ("Comment", "Doctype", "Declaration", "ProcessingInstruction"):
                    continue
                parts.append(re.sub(r"\s+", " ", str(child)))
            elif isinstance(child, Tag):
                name = child.name
                if name in ("h1", "h2", "h3", "h4", "h5", "h6"):
                    heading = child.get_text(" ", strip=True)
                    if heading:
                        parts.append(f"\n\n{'#' * int(name[1])} {heading}\n\n")
                elif name == "pre":
                    code = child.get_text().strip("\n")
                    parts.append(f"\n\n```\n{code}\n```\n\n")
                elif name in ("td", "th"):
                    walk(child)
                    parts.append(" | ")
                else:
                    block = name in _BLOCK
                    if block:
                        parts.append("\n")
                    if name == "li":
                        parts.append("- ")
                    walk(child)
                    if block:
                        parts.append("\n")

    walk(root)
    return title, _tidy_lines("".join(parts))


def _tidy_lines(body: str) -> str:
    """Strip whitespace runs left by inline HTML outside code fences; keep code verbatim."""
    out, in_code = [], False
    for line in body.split("\n"):
        if line.strip().startswith("```"):
            in_code = not in_code
            out.append(line.strip())
        else:
            out.append(line.rstrip() if in_code else line.strip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
