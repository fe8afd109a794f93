"""Test helper shared by the chat tests: a real retriever that records the queries it gets."""
from __future__ import annotations


class RecordingRetriever:
    """A real retriever that remembers every query it was asked."""

    def __init__(self, inner):
        self.inner, self.queries = inner, []

    def search(self, query, k):
        self.queries.append(query)
        return self.inner.search(query, k)
