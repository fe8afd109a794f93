"""reStructuredText to markdown-style text: underlined titles become ``#`` headings,
``code-block`` directives become fences."""
from __future__ import annotations

import re

# --- reStructuredText ----------------------------------------------------------------------
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+_:.])\1{2,}\s*$")


_RST_CODE = re.compile(r"^\s*\.\. (code-block|code|sourcecode)::\s*(\S*)|^(.*)::\s*$")


def clean_rst(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    levels: list[str] = []  # adornment styles in order of first appearance = heading levels
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        # overline + title + underline
        if _RST_UNDERLINE.match(line) and i + 2 < len(lines) and _RST_UNDERLINE.match(lines[i + 2]) \
                and lines[i + 1].strip():
            style = "o" + line.strip()[0]
            levels.append(style) if style not in levels else None
            out.append("#" * min(6, levels.index(style) + 1) + " " + lines[i + 1].strip())
            i += 3
            continue
        if line.strip() and not line.startswith(" ") and _RST_UNDERLINE.match(nxt) \
                and len(nxt.strip()) >= len(line.strip()) - 1:
            style = nxt.strip()[0]
            levels.append(style) if style not in levels else None
            out.append("#" * min(6, levels.index(style) + 1) + " " + line.strip())
            i += 2
            continue
        m = _RST_CODE.match(line)
        if m and not line.lstrip().startswith(".. ") or (m and m.group(1)):
            lang = (m.group(2) or "") if m.group(1) else ""
            if not m.group(1):
                out.append(line.rstrip()[:-1].rstrip() + (":" if line.rstrip()[:-2].strip() else ""))
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                if lines[i].lstrip().startswith(":") and not block:  # directive options
                    i += 1
                    continue
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            if block:
                indent = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                out += [f"```{lang}", *(b[indent:] for b in block), "```", ""]
            continue
        if line.startswith(".. ") and not line.startswith(".. code"):
            directive = re.match(r"^\.\. (\w[\w-]*)::\s*(.*)$", line)
            if directive and directive.group(1) in ("note", "warning", "tip", "important", "seealso", "deprecated", "versionadded", "versionchanged"):
                out.append(f"{directive.group(1).capitalize()}: {directive.group(2)}".rstrip(": "))
            i += 1
            continue
        out.append(line.rstrip())
        i += 1
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
