"""Ingest a docs folder (or one file) into plain-text Documents ready for chunking.

    from assistant.ingest import load_documents
    docs, report = load_documents(Path("docs"))

Every supported format is normalised to markdown-style text (``#`` headings, fenced code), so
the chunker needs one heading parser:
  * Markdown / MDX: front matter becomes the document title; JSX/HTML tags and MDX
    import/export lines are dropped outside code blocks; text and code are kept.
  * reStructuredText: underlined titles become ``#`` headings, ``code-block`` directives fences.
  * HTML: main content only (nav, scripts, footers dropped); h1-h6 headings, <pre> as fences.
  * OpenAPI YAML/JSON: one Document per operation (method, path, summary, parameters and
    request/response fields with defaults, $refs resolved) plus one overview Document.
  * Plain text as is.
Binary files, undecodable text, unreadable paths and files over the size limit are skipped
with a counted warning; nothing here raises except for an empty corpus or a missing path.
File size is checked before reading, so memory stays bounded by ``max_file_mb``.
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .errors import OnboardError

MARKDOWN_EXT = {".md", ".markdown", ".mdx"}
RST_EXT = {".rst"}
TEXT_EXT = {".txt", ".text", ""}
HTML_EXT = {".html", ".htm"}
STRUCTURED_EXT = {".yaml", ".yml", ".json"}
SUPPORTED_EXT = MARKDOWN_EXT | RST_EXT | TEXT_EXT | HTML_EXT | STRUCTURED_EXT
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", "_build", ".ipynb_checkpoints"}
DEFAULT_MAX_FILE_MB = 20.0
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass
class Document:
    """One unit of text to chunk. `path` is relative to the corpus root (posix slashes)."""

    path: str
    text: str
    kind: str  # markdown | rst | html | text | openapi
    heading: str = ""  # heading path prefix for every chunk (page title, API operation)


@dataclass
class IngestReport:
    root: str = ""
    files_seen: int = 0
    files_loaded: int = 0
    documents: int = 0
    ignored: int = 0  # files of types that are not docs (images, scripts, plain YAML...)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): the warnings

    @property
    def warnings(self) -> list[str]:
        return [f"skipped {p}: {why}" for p, why in self.skipped]

    def to_dict(self) -> dict:
        return {"root": self.root, "files_seen": self.files_seen, "files_loaded": self.files_loaded,
                "documents": self.documents, "ignored": self.ignored,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


class SkipFile(Exception):
    """A file that cannot be ingested; the message is the reason shown to the user."""


# --- walking -------------------------------------------------------------------------------
def iter_files(root: Path) -> Iterator[Path]:
    """Every non-hidden file under root (sorted, symlinks listed but not followed into dirs)."""
    if not root.is_dir():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def rel_path(path: Path, root: Path) -> str:
    if root.is_dir():
        return path.relative_to(root).as_posix()
    return path.name


def read_text(path: Path, max_bytes: int) -> str:
    """Read a regular file as text or raise SkipFile with the reason."""
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


# --- OpenAPI -------------------------------------------------------------------------------
def _resolve(spec: dict, node, seen: frozenset = frozenset()):
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#/"):
            return {"type": ref.rsplit("/", 1)[-1]}
        target = spec
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        resolved = _resolve(spec, target, seen | {ref})
        if isinstance(resolved, dict):
            resolved = {**resolved, "x-ref-name": ref.rsplit("/", 1)[-1]}
        return resolved
    return node


def _schema_lines(spec: dict, schema, indent: int = 0, seen: frozenset = frozenset(), depth: int = 0) -> list[str]:
    schema = _resolve(spec, schema, seen)
    if not isinstance(schema, dict) or depth > 4:
        return []
    name = schema.get("x-ref-name")
    seen = seen | {name} if name else seen
    for combo in ("allOf", "oneOf", "anyOf"):
        if combo in schema and "properties" not in schema:
            lines = []
            for sub in schema[combo]:
                lines += _schema_lines(spec, sub, indent, seen, depth + 1)
            return lines
    if schema.get("type") == "array" and "items" in schema:
        return _schema_lines(spec, schema["items"], indent, seen, depth + 1)
    required = set(schema.get("required") or []) if isinstance(schema.get("required"), list) else set()
    lines = []
    for prop, sub in (schema.get("properties") or {}).items():
        sub_r = _resolve(spec, sub, seen)
        if not isinstance(sub_r, dict):
            continue
        lines.append(" " * indent + "- " + _field_line(prop, sub_r, prop in required or sub_r.get("required") is True))
        lines += _schema_lines(spec, sub_r, indent + 2, seen, depth + 1)
    return lines


def _field_line(name: str, s: dict, required: bool) -> str:
    kind = s.get("type") or s.get("x-ref-name") or ""
    if kind == "array" and isinstance(s.get("items"), dict):
        kind = f"array of {s['items'].get('type') or s['items'].get('$ref', '').rsplit('/', 1)[-1] or 'items'}"
    facts = [str(kind)] if kind else []
    if required:
        facts.append("required")
    for key in ("default", "enum", "minimum", "maximum", "min", "max", "example"):
        if key in s:
            facts.append(f"{key} {json.dumps(s[key], ensure_ascii=False, default=str)}")
    desc = " ".join(str(s.get("description") or s.get("title") or "").split())
    return f"`{name}` ({', '.join(facts)})" + (f": {desc}" if desc else "")


def openapi_documents(spec: dict, path: str) -> list[Document]:
    info = spec.get("info") or {}
    api = str(info.get("title") or "API")
    docs: list[Document] = []
    overview = [f"{api} (OpenAPI {spec.get('openapi') or spec.get('swagger')}, version {info.get('version') or spec.get('version') or '?'})",
                str(info.get("description") or "").strip()]
    if spec.get("servers"):
        overview.append("Servers: " + ", ".join(str(s.get("url")) for s in spec["servers"] if isinstance(s, dict)))
    for tag in spec.get("tags") or []:
        if isinstance(tag, dict):
            overview.append(f"- {tag.get('name')}: {tag.get('description', '')}")
    ops = []
    for route, item in (spec.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            ops.append(f"- {method.upper()} {route}: {op.get('summary', '')}")
            docs.append(Document(path=path, kind="openapi", heading=f"{api} > {method.upper()} {route}",
                                 text=_operation_text(spec, method, route, op, shared)))
    overview += ["", "Operations:", *ops]
    docs.insert(0, Document(path=path, kind="openapi", heading=api, text="\n".join(x for x in overview if x is not None).strip()))
    return docs


def _operation_text(spec: dict, method: str, route: str, op: dict, shared: list) -> str:
    lines = [f"{method.upper()} {route}"]
    meta = [f"operationId {op['operationId']}"] if op.get("operationId") else []
    if op.get("tags"):
        meta.append("tags: " + ", ".join(map(str, op["tags"])))
    if meta:
        lines.append("; ".join(meta))
    for key in ("summary", "description"):
        if op.get(key):
            lines.append(str(op[key]).strip())
    params = [_resolve(spec, p) for p in [*shared, *(op.get("parameters") or [])]]
    params = [p for p in params if isinstance(p, dict)]
    if params:
        lines.append("\n## Parameters")
        for p in params:
            s = _resolve(spec, p.get("schema") or {})
            s = {**(s if isinstance(s, dict) else {}), **{k: v for k, v in p.items() if k in ("description", "example")}}
            lines.append(f"- in {p.get('in', '?')}: " + _field_line(str(p.get("name")), s, bool(p.get("required"))))
    body = _resolve(spec, op.get("requestBody") or {})
    content = (body.get("content") if isinstance(body, dict) else None) or op.get("content") or {}
    for media, spec_media in (content.items() if isinstance(content, dict) else []):
        schema = _resolve(spec, (spec_media or {}).get("schema") or {})
        name = schema.get("x-ref-name", "") if isinstance(schema, dict) else ""
        lines.append(f"\n## Request body ({media}{', schema ' + name if name else ''})")
        lines += _schema_lines(spec, schema)
    for code, resp in (op.get("responses") or {}).items():
        resp = _resolve(spec, resp)
        if not isinstance(resp, dict):
            continue
        lines.append(f"\n## Response {code}: {resp.get('description', '')}".rstrip(": "))
        for media, spec_media in (resp.get("content") or {}).items():
            schema = _resolve(spec, (spec_media or {}).get("schema") or {})
            name = schema.get("x-ref-name", "") if isinstance(schema, dict) else ""
            if name:
                lines.append(f"{media}, schema {name}:")
            lines += _schema_lines(spec, schema)
    for sample in op.get("x-codeSamples") or op.get("x-code-samples") or []:
        if isinstance(sample, dict) and sample.get("source"):
            lines += [f"\n## Example ({sample.get('lang', '')})", f"```{str(sample.get('lang', '')).lower()}",
                      str(sample["source"]).rstrip(), "```"]
    return "\n".join(lines).strip()


def _load_structured(text: str, suffix: str):
    try:
        if suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except (ValueError, Exception) as e:  # yaml.YAMLError and friends
        raise SkipFile(f"cannot parse {suffix[1:].upper()} ({type(e).__name__})") from None


# --- one file --------------------------------------------------------------------------------
def load_file(path: Path, rel: str, max_bytes: int = int(DEFAULT_MAX_FILE_MB * 1e6)) -> list[Document]:
    """Documents of one file; [] for a file type that is not docs; SkipFile for a bad file."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXT:
        return []
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
        data = _load_structured(text, suffix)
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
    for file in iter_files(path):
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
    return (f"no documents found in {path}{why}: onboard reads .md, .mdx, .rst, .txt, .html and OpenAPI "
            f".yaml/.json files")
