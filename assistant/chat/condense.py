"""Follow-up questions made standalone before retrieval.

    query = standalone_question(model, "and how do I turn it off?", history)

Retrieval sees one query, not the conversation, so "and how do I turn it off?" after a question
about continuous batching would search for nothing in particular. When a question has history and
reads like a follow-up, the answering model rewrites it as one standalone question (a short
greedy call: PrivateGPT's condense step, Khoj, Open WebUI). Deciding whether to rewrite is cheap
and done first: no history, or a question without follow-up cues (pronouns and deictics such as
"it", "that", "them"; openings such as "and", "what about"; very short questions), skips the
model call, so standalone questions cost nothing and are searched as typed.

The rewrite is checked, not trusted: a small model may answer instead of rewriting, or drop the
question. An output that is empty, far too long, or shares no word with the follow-up is replaced
by the previous question followed by the follow-up (the naive concatenation, still better than
the bare follow-up).
"""
from __future__ import annotations

import re
import threading
from typing import Sequence

SYSTEM_CONDENSE = (
    "You rewrite follow-up questions. Read the conversation and the follow-up question, then write "
    "the follow-up as one standalone question that a search engine could answer without the "
    "conversation: replace words like it, that, them and this with the product, feature, "
    "command or setting they refer to, and keep the user's other words. Write only the question."
)
# Generic examples (not about any corpus): small models copy the form of a shown rewrite far more
# reliably than they follow the instruction alone.
EXAMPLES = (
    ("User: How do I enable TLS in the web server?\nAssistant: Set tls_cert and tls_key in server.toml "
     "and restart the server.", "Which port does it use then?",
     "Which port does the web server use when TLS is enabled?"),
    ("User: What does the backup command do?\nAssistant: It copies the database into a snapshot folder.",
     "can I schedule that?", "Can I schedule the backup command?"),
)
HISTORY_TURNS = 2  # the last two exchanges carry the referent of nearly every follow-up
ANSWER_WORDS = 60  # of each earlier answer: its opening names the subject; the rest is noise here
CONDENSE_MAX_TOKENS = 64
MAX_QUERY_CHARS = 400

_WORD = re.compile(r"[a-z0-9']+")
# Words that point back into the conversation. "the" is not one: "the default port" stands alone.
_BACK_REFERENCES = {
    "it", "its", "it's", "itself", "this", "that", "these", "those", "them", "they", "their", "theirs",
    "there", "one", "ones", "same", "above", "previous", "former", "latter", "also", "too", "else",
    "instead", "another", "again", "here", "such", "he", "she", "him", "her",
}
_STOP = {
    "the", "and", "for", "you", "your", "how", "what", "which", "who", "why", "when", "where", "can", "does",
    "did", "are", "was", "were", "has", "have", "had", "with", "without", "from", "into", "about", "use",
    "using", "set", "get", "need", "want", "should", "would", "could", "will", "not", "any", "all", "some",
    "more", "most", "than", "then", "way", "make", "just", "only", "out", "off", "yes", "there",
}
_FOLLOW_UP_OPENINGS = ("and ", "but ", "or ", "so ", "also ", "then ", "what about", "how about", "what if",
                       "why not", "ok ", "okay ", "same ", "now ")
SHORT_QUESTION_WORDS = 3  # "on Windows?", "which port?": too short to name their subject
_SENTENCE_END = re.compile(r"[.!?]\s+[A-Z]")
_DEFINITE = re.compile(r"\b(?:the|that|this|these|those)\s+([a-z0-9']+)(?:\s+([a-z0-9']+))?")


def needs_condensing(question: str, history: Sequence[tuple[str, str]]) -> bool:
    """True when `question` follows up on `history` (cheap checks, no model call)."""
    if not history:
        return False
    q = " ".join(question.lower().split())
    words = _WORD.findall(q)
    if len(words) <= SHORT_QUESTION_WORDS:
        return True
    if q.startswith(_FOLLOW_UP_OPENINGS):
        return True
    if any(w in _BACK_REFERENCES for w in words):
        return True
    # "the cmake step", "the image": a definite noun the last exchange introduced
    last = set(_WORD.findall(" ".join(history[-1]).lower()))
    return any(w and len(w) > 2 and w in last for m in _DEFINITE.finditer(q) for w in m.groups())


def _clip(text: str, words: int) -> str:
    parts = " ".join(text.split()).split(" ")
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def condense_messages(question: str, history: Sequence[tuple[str, str]]) -> list[dict]:
    """The condensing prompt: the instruction, worked examples, then the recent conversation."""
    def user(conversation: str, follow_up: str) -> dict:
        return {"role": "user", "content": f"Conversation:\n{conversation}\n\nFollow-up question: {follow_up}\n\n"
                                           "Standalone question:"}

    messages = [{"role": "system", "content": SYSTEM_CONDENSE}]
    for conversation, follow_up, rewrite in EXAMPLES:
        messages += [user(conversation, follow_up), {"role": "assistant", "content": rewrite}]
    recent = list(history)[-HISTORY_TURNS:]
    conversation = "\n".join(f"User: {' '.join(q.split())}\nAssistant: {_clip(a, ANSWER_WORDS)}" for q, a in recent)
    return [*messages, user(conversation, question)]


def clean_rewrite(text: str) -> str:
    """The first non-empty line, without a label or quotes the model may add."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(standalone question|question|rewritten question)\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip('"\'`“”').strip()


def fallback_query(question: str, history: Sequence[tuple[str, str]]) -> str:
    """The previous question followed by the follow-up: what a rewrite that failed falls back to."""
    return f"{history[-1][0].strip()} {question}" if history else question


def acceptable_rewrite(rewrite: str, question: str, history: Sequence[tuple[str, str]]) -> bool:
    """A rewrite is one question-sized sentence that keeps some of the follow-up's words and adds
    a word from the conversation (an echo of "how do I turn it on?" resolved nothing)."""
    if not rewrite or len(rewrite) > MAX_QUERY_CHARS or len(_SENTENCE_END.findall(rewrite.rstrip())) > 0:
        return False  # empty, rambling, or an answer of several sentences
    if question.rstrip().endswith("?") and not rewrite.endswith("?"):
        return False  # answered instead of rewritten
    said = _content_words(rewrite)
    asked = _content_words(question)
    if asked and not asked & said:
        return False  # lost the question
    # It must name something from the conversation that the follow-up left out.
    return bool((said - asked) & _content_words(" ".join(q + " " + a for q, a in history)))


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOP and w not in _BACK_REFERENCES}


def condense(model, question: str, history: Sequence[tuple[str, str]],
             cancel: threading.Event | None = None) -> str:
    """One standalone question from `question` and `history` (a short greedy model call)."""
    text = model.chat(condense_messages(question, history), max_tokens=CONDENSE_MAX_TOKENS,
                      temperature=0.0, cancel=cancel)
    rewrite = clean_rewrite(text)
    return rewrite if acceptable_rewrite(rewrite, question, history) else fallback_query(question, history)


def standalone_question(model, question: str, history: Sequence[tuple[str, str]],
                        cancel: threading.Event | None = None) -> str:
    """`question` itself when it stands on its own, else the model's standalone rewrite."""
    if not needs_condensing(question, history):
        return question
    return condense(model, question, history, cancel)
