"""Markdown / MDX to clean text: front matter becomes the document title; JSX/HTML tags and MDX
import/export lines are dropped outside code blocks; text and code are kept."""
from __future__ import annotations

import re

# --- markdown / mdx ------------------------------------------------------------------------
_FENCE = re.compile(r"^\s*(```+|~~~+)")


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


_MDX_STATEMENT = re.compile(r"^\s*(import\s.+\sfrom\s|import\s+['\"]|export\s+(default\s+)?(const|function|let|var|\{))")


_TAG = re.compile(r"</?[A-Za-z][\w.:-]*(\s+[^<>]*?)?/?>")


_COMMENT = re.compile(r"<!--.*?-->|\{/\*.*?\*/\}", re.DOTALL)


def _front_matter(text: str) -> tuple[dict, str]:
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text
    import yaml

    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        meta = None
    return (meta if isinstance(meta, dict) else {}), text[m.end():]


def clean_markdown(text: str) -> tuple[str, str]:
    """Markdown/MDX -> (title, text): drop front matter, JSX/HTML tags and MDX statements
    outside code fences; keep prose and code verbatim."""
    meta, text = _front_matter(text)
    text = _COMMENT.sub("", text)
    out, fence = [], None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if fence:
            out.append(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            out.append(line)
            continue
        if _MDX_STATEMENT.match(line):
            continue
        stripped = _TAG.sub("", line)
        if stripped.strip() or not line.strip():
            out.append(stripped.rstrip())
        # a line that held only tags disappears entirely
    title = str(meta.get("title") or "").strip()
    body = "\n".join(out).strip()
    desc = meta.get("description")
    if isinstance(desc, str) and desc.strip() and desc.strip() not in body:
        body = f"{desc.strip()}\n\n{body}"
    return title, re.sub(r"\n{3,}", "\n\n", body)
