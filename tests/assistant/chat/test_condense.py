"""Follow-up questions: the cheap standalone check, and condensing with the real SmolLM2-135M on
the real Nitro index (what was searched is recorded on the Answer)."""
from __future__ import annotations

import pytest

from assistant.chat.condense import acceptable_rewrite, condense, needs_condensing, standalone_question
from assistant.chat.modes import AnswerJob
from assistant.rag.index import open_retriever
from tests.assistant.chat.recording import RecordingRetriever

BATCHING = [("What is continuous batching?",
             "It groups several inference requests into one batch, which raises throughput.")]


@pytest.mark.parametrize("question,history,expected", [
    ("How do I turn it on?", [], False),  # no history: nothing to condense with
    ("How do I install Nitro on Windows?", BATCHING, False),  # names its subject
    ("What is the default port of the server?", BATCHING, False),
    ("How do I turn it on?", BATCHING, True),  # pronoun
    ("And what about the GPU build?", BATCHING, True),  # opening
    ("On Windows?", BATCHING, True),  # too short to stand alone
    ("Which flags end up in the config file?", BATCHING, False),  # a definite noun new to the conversation...
    ("Which requests end up in the batch?", BATCHING, True),  # ...or one the last answer introduced
])
def test_needs_condensing(question, history, expected):
    assert needs_condensing(question, history) is expected


def test_acceptable_rewrite():
    q = "How do I turn it on?"
    assert acceptable_rewrite("How do I turn on continuous batching?", q, BATCHING)
    assert not acceptable_rewrite("How do I turn it on?", q, BATCHING)  # an echo resolved nothing
    assert not acceptable_rewrite("Continuous batching groups requests. It is on by default.", q, BATCHING)
    assert not acceptable_rewrite("", q, BATCHING)


class _CountingModel:
    """The real model, counting its chat calls."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def chat(self, messages, **kw):
        self.calls += 1
        return self.model.chat(messages, **kw)


def test_standalone_question_skips_the_model(smollm):
    counting = _CountingModel(smollm)
    for question, history in (("How do I turn it on?", []), ("How do I install Nitro on Windows?", BATCHING)):
        assert standalone_question(counting, question, history) == question
    assert counting.calls == 0


def test_follow_up_is_condensed_with_the_conversation(smollm):
    counting = _CountingModel(smollm)
    query = standalone_question(counting, "How do I turn it on?", BATCHING)
    assert counting.calls == 1
    assert "batching" in query.lower() and query != "How do I turn it on?"
    assert condense(smollm, "How do I turn it on?", BATCHING) == query  # greedy: the same every time


def test_answer_job_searches_the_standalone_question(smollm, nitro_settings):
    retriever = RecordingRetriever(open_retriever(nitro_settings, "nitro", progress=False))
    follow_up = AnswerJob("How do I turn it on in Nitro?", smollm, mode="rag", retriever=retriever, k=5,
                          history=BATCHING, max_tokens=8, temperature=0.0)
    follow_up.prepare()
    r = follow_up.result
    assert retriever.queries == [r.query] and "batching" in r.query.lower()
    assert r.timings["condense_ms"] > 0 and r.to_dict()["query"] == r.query
    assert "docs/features/cont-batch.md" in {h.path for h in r.sources}
    # the bare follow-up misses the page: condensing is what finds it
    assert "docs/features/cont-batch.md" not in {h.path for h in retriever.inner.search(r.question, 5)}

    standalone = AnswerJob("How do I enable continuous batching in Nitro?", smollm, mode="rag",
                           retriever=retriever, k=4, history=BATCHING, max_tokens=8, temperature=0.0)
    standalone.prepare()
    assert standalone.result.query == standalone.result.question and "condense_ms" not in standalone.result.timings
