"""Prompt-lookup decoding on the real default model: the drafts, the text it writes, and that it
actually saves decodes when an answer copies from its documents."""
from __future__ import annotations

import numpy as np
import pytest

from assistant.chat.modes import AnswerJob
from assistant.llm.chat_model import ChatModel
from assistant.llm.kv_blocks import BlockStore
from assistant.llm.prompt_lookup import PromptLookup, counting_decodes
from tests.assistant.llm.test_kv_blocks import DOCS, _FixedRetriever


def test_drafts_copy_what_followed_the_latest_match():
    ids = np.array([5, 1, 2, 3, 4, 9, 1, 2, 7, 8, 6, 1, 2], dtype=np.intc)
    # the last two tokens (1, 2) occur at 1 and 6: the later one wins
    assert PromptLookup(max_ngram=3, min_ngram=2, num_pred=3)(ids).tolist() == [7, 8, 6]
    # a longer match is preferred: (6, 1, 2) would win over (1, 2) if it occurred earlier
    ids2 = np.array([6, 1, 2, 0, 1, 2, 5, 6, 1, 2], dtype=np.intc)
    assert PromptLookup(max_ngram=3, min_ngram=2, num_pred=2)(ids2).tolist() == [0, 1]
    assert PromptLookup(min_ngram=2)(np.array([1, 2, 3, 4], dtype=np.intc)).size == 0  # no match
    # a match at the very end drafts no more than the context holds
    assert PromptLookup(max_ngram=1, min_ngram=1, num_pred=8)(np.array([3, 4, 3], dtype=np.intc)).tolist() == [4, 3]


@pytest.fixture
def model(smollm_gguf):
    return ChatModel(smollm_gguf, n_ctx=2048, n_threads=2, seed=0, block_store=BlockStore(memory_mb=256))


def _answer(model, question, lookup: bool, max_tokens=40, temperature=0.0):
    model.prompt_lookup = PromptLookup() if lookup else None
    with counting_decodes(model) as decodes:
        job = AnswerJob(question, model, mode="rag", retriever=_FixedRetriever(DOCS), k=3,
                        max_tokens=max_tokens, temperature=temperature)
        answer = job.run().answer
    return answer, model.last.completion_tokens, decodes[0]


@pytest.mark.parametrize("question", ["Which port does the server use by default?",
                                      "Quote the sentence about continuous batching word for word."])
def test_greedy_text_is_the_same_with_and_without(model, question):
    """Drafts are kept only where greedy picks them anyway. (Exact in arithmetic; llama.cpp's CPU
    kernels are not batch-invariant, so over long answers a near-tie can tip: bench/prompt_lookup.py
    counts identical answers. These short ones must match.)"""
    without, n_without, _ = _answer(model, question, lookup=False)
    with_, n_with, _ = _answer(model, question, lookup=True)
    assert with_ == without and n_with == n_without
    assert without


def test_copying_an_answer_from_a_document_takes_fewer_decodes(model):
    question = "Quote the sentence about continuous batching word for word."
    _, tokens, decodes_without = _answer(model, question, lookup=False)
    _, tokens_with, decodes_with = _answer(model, question, lookup=True)
    assert decodes_without >= tokens - 1 > 10
    assert decodes_with <= 0.7 * decodes_without, (decodes_with, decodes_without)


def test_lookup_stays_off_without_documents_or_when_sampling(model):
    seen = []
    model.prompt_lookup = lambda ids, **kw: seen.append(len(ids)) or np.empty(0, dtype=np.intc)
    model.chat([{"role": "user", "content": "Say hello."}], max_tokens=4, temperature=0.0)
    AnswerJob("Which port?", model, mode="rag", retriever=_FixedRetriever(DOCS), k=2, max_tokens=4,
              temperature=0.7).run()
    assert seen == []
    AnswerJob("Which port?", model, mode="rag", retriever=_FixedRetriever(DOCS), k=2, max_tokens=4,
              temperature=0.0).run()
    assert seen and model.llm.draft_model is None  # used, and not left on for the next caller
