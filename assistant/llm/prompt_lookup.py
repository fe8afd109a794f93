"""Prompt-lookup decoding: guess the next tokens by copying them from the prompt, check the
guesses in one batch.

Why: rag answers copy names, flags, commands and paths out of the retrieved documents. When the
last few tokens written also occur earlier in the context, the tokens that followed them there
are a likely continuation. llama.cpp scores the written token and the guesses in one decode (on a
CPU a decode is bound by reading the weights, so k+1 tokens cost little more than one), and
llama-cpp-python's `generate` keeps each guess only while its sampler picks that very token, so
the text is the one plain decoding writes: same tokens, same sampler calls, same random draws.

llama-cpp-python drives drafts through `Llama(draft_model=...)`, which turns on logits for every
token of every decode and keeps them all in `Llama.scores` (n_ctx x vocabulary floats): prompt
reading then pays the output layer for each prompt token. `lookup_llama_class` instead asks for
all logits only in the short decodes that verify guesses, and keeps none in Python.
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np

MAX_VERIFY = 16  # a decode this short, while drafting, is a written token and its guesses


class PromptLookup:
    """Draft model for llama_cpp.Llama: the tokens that followed the latest earlier occurrence of
    the context's last n tokens (n from `max_ngram` down to `min_ngram`), at most `num_pred`."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2, num_pred: int = 8):
        self.max_ngram, self.min_ngram, self.num_pred = max_ngram, min_ngram, num_pred

    def __call__(self, input_ids: np.ndarray, /, **kwargs) -> np.ndarray:
        ids = np.asarray(input_ids)
        n_ids = len(ids)
        for n in range(min(self.max_ngram, n_ids - 1), self.min_ngram - 1, -1):
            key = ids[n_ids - n:]
            # windows over everything but the key itself; the latest match is the likeliest copy
            windows = np.lib.stride_tricks.sliding_window_view(ids[:n_ids - 1], n)
            found = np.flatnonzero((windows == key).all(axis=1))
            if len(found):
                start = int(found[-1]) + n
                draft = ids[start: min(start + self.num_pred, n_ids)]
                if len(draft):
                    return draft.astype(np.intc)
        return np.empty(0, dtype=np.intc)


@functools.cache
def lookup_llama_class():
    """llama_cpp.Llama whose short decodes, while a draft model is set, return logits for every
    token (the sampler verifies each guess at its position); every other decode is unchanged."""
    import llama_cpp

    class LookupLlama(llama_cpp.Llama):
        def eval(self, tokens):
            if self.draft_model is None or not 1 < len(tokens) <= MAX_VERIFY:
                return super().eval(tokens)
            n_past = self.n_tokens
            self._ctx.kv_cache_seq_rm(-1, n_past, -1)
            self._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
            self._ctx.decode(self._batch)
            self.input_ids[n_past: n_past + len(tokens)] = tokens
            self.n_tokens = n_past + len(tokens)
            self._requires_eval = False

    return LookupLlama


@contextlib.contextmanager
def counting_decodes(model):
    """Count the llama.cpp decodes (Llama.eval calls) of `model` inside the block: how the bench
    and the tests see how many tokens each verifying decode yields. Yields a one-item list."""
    count = [0]
    plain_eval = type(model.llm).eval

    def counting_eval(tokens):
        count[0] += 1
        return plain_eval(model.llm, tokens)

    model.llm.eval = counting_eval
    try:
        yield count
    finally:
        del model.llm.eval
