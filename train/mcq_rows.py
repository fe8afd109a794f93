"""Multiple-choice reading rows: retrieved docs in the prompt, a question with four lettered
options, the option's letter as the answer, in exactly the prompt `onboard eval` scores
(assistant.eval.scoring's system prompt and question block, assistant.chat.prompts' documents).

Why: a small model with the right page in its context still misses about half of the questions
(Qwen2.5-Coder-0.5B + RAG: 44 % on the public Nitro set, with the source retrieved for 95 %); it
reads the docs, but does not match what it reads against near-identical options. These rows train
that skill directly, from data any user has - never from evaluation questions:

  * from Q&A pairs with their answering chunk (GPT-4 import or the local teacher): the options
    are the answer, near-miss copies of it (one number, identifier, flag, path, URL or boolean
    swapped for another of the same kind from the same page, else the corpus: the "two options
    nearly alike" that small models confuse) and answers to other questions of the same page,
    never one that may be right too (it names the answer's value or shares half its words);
  * answer cloze from the same pairs: the answer with one value the answering chunk states
    blanked; the options are that value and same-kind values (short options, as in fact questions);
  * cloze items straight from the chunks, no teacher at all: a line of the docs with one value
    blanked; the options are that value and same-kind values from the same page.

Prose rows (prose_rows) train written answers: the RAG answer prompt, the same kind of
documents, and the pairs' written answers with the chunk's citation. Mixed into the MCQ rows
(build v6: a tenth as many) they took the loss from the letters (+7.5 / +7.5 against v5's
+15.0 / +10.0); written to a file of their own (prose.jsonl, PROSE_STAGE_SHARE) a second, short
stage trains them after the letters (build v7).

The documents are the answering chunk among `n_docs - 1` others (one from the same page where
there is one, as retrieval returns), in a random position; the right letter is uniform. The
questions of one answering chunk share one set of documents: a row is a chat of up to
`per_row` of them (the documents in its first turn), so the documents are paid for once per row.

    rows, counts = mcq_rows(pairs, chunks_by_id, pool, seed=0)   # -> reading.jsonl (messages rows; one question: prompt/completion)
"""
from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from typing import NamedTuple

from assistant.chat.prompts import SYSTEM_RAG, cited_answer, rag_user_message
from assistant.eval.mcq import LETTERS
from assistant.eval.scoring import SYSTEM_MCQ_RAG, format_question
from assistant.rag.hits import Hit

N_OPTIONS = 4
OPTION_WORDS = 45  # answers are cut at a sentence end near this many words: options stay readable
# Values worth asking about, most specific first: `code`, URLs, --flags, dotted/snake/kebab
# identifiers, paths, numbers (ports, defaults, versions), booleans.
SPAN = re.compile(r"`[^`\n]{1,60}`|https?://[^\s)\]>\"']+|(?<![\w-])--?[A-Za-z][\w-]*"
                  r"|\b[A-Za-z]\w*(?:[_./-]\w+)+\b|\b\d+(?:\.\d+)*\b|\b(?:true|false)\b", re.IGNORECASE)
ABBREVIATION = re.compile(r"(?i)(?:[a-z]\.){1,3}[a-z]?|etc")
CLOZE_PER_CHUNK = 2
CLOZE_MIN_WORDS = 5
# Questions that share one set of documents in a row (a multi-turn chat): the documents are paid
# for once per row, so a packed training step carries several letters instead of ~3.
QUESTIONS_PER_ROW = 8
# Written answers in one prose row (prose_rows): they share its documents.
PROSE_PER_ROW = 4
# Prose rows for a stage of their own (prose.jsonl, as many as this share of the MCQ rows): the
# cpu-specialist recipe trains them after the letters, in a short second sft stage, so the
# letters keep the loss of the first (build v7). 0.1 (build v7) taught the citations but left
# free-form accuracy 2.5 points under the base's; 0.3 (pilot 9, on v7's letters) put it 1.6 over.
PROSE_STAGE_SHARE = 0.3


def span_kind(span: str) -> str:
    s = span.lower()
    if s.startswith("`"):
        return "code"
    if s in ("true", "false"):
        return "bool"
    if re.fullmatch(r"\d+(?:\.\d+)*", s):
        return "num"
    if s.startswith("http"):
        return "url"
    if s.startswith("-"):
        return "flag"
    return "ident"


def spans(text: str) -> list[str]:
    """Values in text; not single digits (list numbers, counts), plain hyphenated words nor
    abbreviations (e.g, i.e)."""
    out = []
    for m in SPAN.finditer(text):
        s, kind = m.group(0), span_kind(m.group(0))
        if (kind == "num" and len(s) < 2) or (kind == "ident" and not re.search(r"[_./\d]", s)) \
                or ABBREVIATION.fullmatch(s):
            continue
        out.append(s)
    return out


class Vocabulary:
    """Values of each kind, per page and for the whole corpus, to draw look-alikes from."""

    def __init__(self, chunks: list[Hit]):
        self.by_path: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.all: dict[str, list[str]] = defaultdict(list)
        for h in chunks:
            for s in dict.fromkeys(spans(h.text)):
                self.by_path[h.path][span_kind(s)].append(s)
                self.all[span_kind(s)].append(s)
        for table in (self.all, *self.by_path.values()):
            for kind in table:
                table[kind] = list(dict.fromkeys(table[kind]))

    def lookalikes(self, span: str, path: str, rng: random.Random, n: int) -> list[str]:
        """Up to n other values of span's kind: the same page first, then the corpus."""
        kind = span_kind(span)
        if kind == "bool":
            return ["false" if span.lower() == "true" else "true"][:n]
        out: list[str] = []
        for table in (self.by_path.get(path, {}), self.all):
            pool = [s for s in table.get(kind, []) if s.lower() != span.lower() and s not in out]
            rng.shuffle(pool)
            out += pool[: n - len(out)]
            if len(out) >= n:
                break
        if kind == "num" and len(out) < n and span.isdigit():  # a page with few numbers: nearby values
            base = int(span)
            for v in (base * 2, base + 1, base * 10, max(0, base - 1)):
                v = str(v)
                if v != span and v not in out and len(out) < n:
                    out.append(v)
        return out


def shorten(text: str, words: int = OPTION_WORDS) -> str:
    """The first sentences of text, up to about `words` words (never cut inside a sentence
    unless the first one is already too long)."""
    text = " ".join(text.split())
    sentences = re.split(r"(?<=[.!?])\s+", text)
    out = sentences[0]
    for s in sentences[1:]:
        if len((out + " " + s).split()) > words:
            break
        out += " " + s
    toks = out.split()
    return out if len(toks) <= words * 1.5 else " ".join(toks[: int(words * 1.5)]) + " …"


def near_misses(answer: str, path: str, vocab: Vocabulary, rng: random.Random, n: int) -> list[str]:
    """Copies of `answer` with one value swapped for a look-alike (different values each)."""
    found = list(dict.fromkeys(spans(answer)))
    rng.shuffle(found)
    out: list[str] = []
    for span in found:
        for other in vocab.lookalikes(span, path, rng, 2):
            variant = answer.replace(span, other, 1)
            if variant != answer and variant not in out:
                out.append(variant)
                break
        if len(out) >= n:
            break
    return out


class Item(NamedTuple):
    chunk: Hit  # the answering chunk
    block: str  # the question with its lettered options
    letter: str  # the right option's letter
    right: str  # the right option's text


def mcq_item(chunk: Hit, question: str, right: str, wrong: list[str], rng: random.Random) -> Item:
    """The question with `right` and distractors in a random order; `wrong` holds at least
    N_OPTIONS - 1 distinct distractors."""
    options = [right] + wrong[: N_OPTIONS - 1]
    rng.shuffle(options)
    return Item(chunk, format_question(question, options), LETTERS[options.index(right)], right)


def pick_docs(oracle: Hit, pool: list[Hit], n_docs: int, rng: random.Random) -> list[Hit]:
    """The answering chunk among n_docs - 1 others (one from its page where there is one, as
    retrieval returns), at a random position."""
    same_page = [h for h in pool if h.path == oracle.path and h.chunk_id != oracle.chunk_id]
    other = [h for h in pool if h.path != oracle.path]
    docs = rng.sample(same_page, min(1, len(same_page), n_docs - 1))
    docs += rng.sample(other, min(n_docs - 1 - len(docs), len(other)))
    docs.insert(rng.randrange(len(docs) + 1), oracle)
    return docs


def conversation_row(items: list[tuple[str, str]], docs: list[Hit], system_prompt: str = SYSTEM_MCQ_RAG) -> dict:
    """One question: a prompt/completion row. Several: one chat in which the first user turn
    carries the documents and every later turn asks another question about them, so the
    documents (~90 % of a one-question row's tokens) are paid for once per row instead of once
    per letter; `messages` rows train on every assistant turn (train/sft.py)."""
    system = {"role": "system", "content": system_prompt}
    first = {"role": "user", "content": rag_user_message(items[0][0], docs)}
    if len(items) == 1:
        return {"prompt": [system, first], "completion": [{"role": "assistant", "content": items[0][1]}]}
    messages = [system, first, {"role": "assistant", "content": items[0][1]}]
    for block, reply in items[1:]:
        messages += [{"role": "user", "content": f"Question: {block}"}, {"role": "assistant", "content": reply}]
    return {"messages": messages}


def _distinct(right: str, candidates: list[str]) -> list[str]:
    seen, out = {right.strip().lower()}, []
    for c in candidates:
        key = c.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append(c)
    return out


AGREE_JACCARD = 0.5


def agrees(other: str, right: str) -> bool:
    """Whether another answer may be right too, so it cannot serve as a wrong option: it names
    one of the right answer's values, or shares half its words. (Q&A data asks the same fact in
    many ways; a page's other answers were often a second right option - label noise.)"""
    if {s.lower() for s in spans(other)} & {s.lower() for s in spans(right)}:
        return True
    a, b = set(re.findall(r"\w+", other.lower())), set(re.findall(r"\w+", right.lower()))
    return bool(a | b) and len(a & b) / len(a | b) >= AGREE_JACCARD


def pair_items(pairs: list[dict], chunks: dict[str, Hit], vocab: Vocabulary, seed: int) -> tuple[list[Item], Counter]:
    """One item per pair that has its chunk; near misses first, then answers of the same page."""
    items, kinds = [], Counter()
    placed = [(p, chunks[p["chunk_id"]], shorten(p["answer"])) for p in pairs if p.get("chunk_id") in chunks]
    answers_by_path: dict[str, list[str]] = defaultdict(list)
    for _, oracle, right in placed:
        answers_by_path[oracle.path].append(right)
    every = [a for answers in answers_by_path.values() for a in answers]
    for p, oracle, right in placed:
        rng = random.Random(f"{seed}/mcq/{p['question']}")
        near = near_misses(right, oracle.path, vocab, rng, 2)
        page = [a for a in answers_by_path[oracle.path] if a != right]
        rng.shuffle(page)
        others = [a for a in page + rng.sample(every, min(6, len(every))) if not agrees(a, right)]
        kinds["agreeing_options_dropped"] += len(page) + min(6, len(every)) - len(others)
        wrong = _distinct(right, near + others)
        if len(wrong) < N_OPTIONS - 1:
            kinds["too_few_options"] += 1
            continue
        kinds["near_miss_options"] += min(len(near), N_OPTIONS - 1)
        items.append(mcq_item(oracle, p["question"], right, wrong, rng))
    kinds["from_pairs"] = len(items)
    return items, kinds


def blank_item(chunk: Hit, text: str, span: str, ask: str, vocab: Vocabulary, rng: random.Random,
               avoid: str = "") -> Item | None:
    """`ask` and `text` with `span` blanked; the options are span and same-kind look-alikes (none
    that `avoid` already contains). None when the page and corpus have too few look-alikes."""
    wrong = _distinct(span, [w for w in vocab.lookalikes(span, chunk.path, rng, N_OPTIONS + 2)
                             if not (avoid and w.lower() in avoid.lower())])
    if len(wrong) < N_OPTIONS - 1:
        return None
    blanked = text.replace(span, "____", 1)
    return mcq_item(chunk, f"{ask}\n\"{blanked}\"", span, wrong, rng)


def answer_cloze_items(pairs: list[dict], chunks: dict[str, Hit], vocab: Vocabulary, seed: int) -> list[Item]:
    """Teacher-written answers with one value blanked, the value one the answering chunk states:
    the model matches a paraphrase against the docs, and the options are short same-kind
    values, as in fact questions."""
    items = []
    for p in pairs:
        oracle = chunks.get(p.get("chunk_id"))
        if oracle is None:
            continue
        rng = random.Random(f"{seed}/answer-cloze/{p['question']}")
        answer = shorten(p["answer"])
        stated = [s for s in dict.fromkeys(spans(answer)) if span_kind(s) != "bool"
                  and s in oracle.text and s.lower() not in p["question"].lower()]
        if not stated:
            continue
        ask = f"{p['question']}\nWhich value fills the blank in this answer?"
        item = blank_item(oracle, answer, rng.choice(stated), ask, vocab, rng, avoid=answer)
        if item:
            items.append(item)
    return items


def cloze_items(pool: list[Hit], vocab: Vocabulary, seed: int, per_chunk: int = CLOZE_PER_CHUNK) -> list[Item]:
    """Teacher-free items: a docs line with one value blanked; pick the value that fills it."""
    items = []
    for h in pool:
        rng = random.Random(f"{seed}/cloze/{h.chunk_id}")
        lines = [ln.strip() for ln in h.text.splitlines()
                 if len(ln.split()) >= CLOZE_MIN_WORDS and spans(ln) and len(ln) < 400]
        rng.shuffle(lines)
        for line in lines[:per_chunk]:
            ask = f"Which value fills the blank in this line of {h.path}?"
            item = blank_item(h, line, rng.choice(spans(line)), ask, vocab, rng)
            if item:
                items.append(item)
    return items


def gives_away(a: Item, b: Item) -> bool:
    """Whether one item's answered turn, earlier in a chat, would give the other its answer: the
    two answers agree (the Q&A data asks one fact many ways; an answer-cloze item's value is in
    its pair's answer; two cloze lines blank one value)."""
    return agrees(a.right, b.right)


def group_rows(items: list[Item], pool: list[Hit], n_docs: int, per_row: int, seed: int
               ) -> tuple[list[dict], int]:
    """Rows of up to `per_row` questions that share one set of documents: the items of one
    answering chunk, in a random order, each group with its own draw of other documents. Also
    returns how many items follow an agreeing item in their row (gives_away): the eval asks one
    question at a time, so those turns can be answered from the chat instead of the documents.
    Keeping them apart costs ~40 % more rows on Nitro; counted, not yet changed (card: next list)."""
    by_chunk: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_chunk[it.chunk.chunk_id].append(it)
    rows, given_away = [], 0
    for chunk_id, group in by_chunk.items():
        rng = random.Random(f"{seed}/group/{chunk_id}")
        rng.shuffle(group)
        for i in range(0, len(group), per_row):
            part = group[i:i + per_row]
            given_away += sum(any(gives_away(it, o) for o in part[:j]) for j, it in enumerate(part))
            rows.append(conversation_row([(it.block, it.letter) for it in part],
                                         pick_docs(part[0].chunk, pool, n_docs, rng)))
    return rows, given_away


def prose_rows(pairs: list[dict], chunks: dict[str, Hit], pool: list[Hit], n_rows: int, n_docs: int = 3,
               per_row: int = PROSE_PER_ROW, seed: int = 0) -> tuple[list[dict], int]:
    """`n_rows` chats in the prompt `onboard ask` answers in (rag mode: the plain RAG system
    prompt, no options): the documents, then up to `per_row` questions of one answering chunk,
    each answered with the pair's written answer and the chunk's citation. Why: letter-only
    rows may cost written answers (build v5: free-form 1.6 points below the base, one answer
    repeating the question); build v6 measured a tenth of them (card). Returns (rows, answers)."""
    by_chunk: dict[str, list[dict]] = defaultdict(list)
    for p in pairs:
        if p.get("chunk_id") in chunks and p.get("answer", "").strip():
            by_chunk[p["chunk_id"]].append(p)
    rng = random.Random(f"{seed}/prose")
    chosen = sorted(by_chunk)
    rng.shuffle(chosen)
    rows, answers = [], 0
    for chunk_id in chosen[:n_rows]:
        group = by_chunk[chunk_id][:]
        rng.shuffle(group)
        docs = pick_docs(chunks[chunk_id], pool, n_docs, rng)
        # pick_docs placed the answering chunk among the docs
        turns = [(p["question"], cited_answer(" ".join(p["answer"].split()), docs, chunks[chunk_id]))
                 for p in group[:per_row]]
        rows.append(conversation_row(turns, docs, SYSTEM_RAG))
        answers += len(turns)
    return rows, answers


def mcq_rows(pairs: list[dict], chunks: dict[str, Hit], pool: list[Hit], n_docs: int = 3,
             seed: int = 0, per_row: int = QUESTIONS_PER_ROW,
             cloze_per_chunk: int | None = None) -> tuple[list[dict], dict]:
    """All MCQ rows (questions from pairs, then cloze, grouped by answering chunk), shuffled with
    `seed`; and their counts. `cloze_per_chunk` None: CLOZE_PER_CHUNK."""
    vocab = Vocabulary(pool)
    items, kinds = pair_items(pairs, chunks, vocab, seed)
    filled = answer_cloze_items(pairs, chunks, vocab, seed)
    close = cloze_items(pool, vocab, seed, CLOZE_PER_CHUNK if cloze_per_chunk is None else cloze_per_chunk)
    rows, given_away = group_rows(items + filled + close, pool, n_docs, max(1, per_row), seed)
    random.Random(f"{seed}/mcq-order").shuffle(rows)
    return rows, {"reading": len(rows), "reading_questions": len(items) + len(filled) + len(close),
                  "reading_from_pairs": kinds["from_pairs"], "reading_answer_cloze": len(filled),
                  "reading_cloze": len(close), "reading_agreeing_options_dropped": kinds["agreeing_options_dropped"],
                  "reading_near_miss_options": kinds["near_miss_options"],
                  "reading_skipped_too_few_options": kinds["too_few_options"],
                  "reading_answer_given_away_in_row": given_away}
