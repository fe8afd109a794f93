"""Cheap loop detection for streamed answers: stop a model that repeats itself.

Small models answering from documents often fall into a loop: one sentence (or one line of a
list) again and again until max_tokens. llama.cpp's repeat penalties (settings repeat_penalty,
frequency_penalty, presence_penalty) make that rarer but look back only 64 tokens and also push
away from names and flags an answer must repeat. This detector is the backstop: it counts every
n-token run of the answer (a dict of tuples, O(1) per token) and, when one run occurs for the
`repeats`-th time, says where the loop began, so the stream ends and the answer is cut back to
the text before its first repetition.

    detector = LoopDetector(n=8, repeats=3)
    for piece in stream:
        if detector.add(piece):
            break
    answer = detector.text()          # the answer without the looping tail

`repeated_run(tokens, n, repeats)` is the same test on a finished token list (bench/loops.py
counts answers with it).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence


class LoopDetector:
    """Feed streamed pieces (one per token); `add` returns True once a loop is detected."""

    def __init__(self, n: int = 8, repeats: int = 3):
        self.n, self.repeats = n, repeats
        self.pieces: list[str] = []
        self._starts: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.loop_start: int | None = None  # piece index where the repeated text first recurs

    @property
    def enabled(self) -> bool:
        return self.n > 0 and self.repeats > 1

    def add(self, piece: str) -> bool:
        self.pieces.append(piece)
        if not self.enabled or self.loop_start is not None or len(self.pieces) < self.n:
            return self.loop_start is not None
        start = len(self.pieces) - self.n
        # Whitespace-only differences do not break a loop ("a\n" vs "a "): compare stripped pieces.
        key = tuple(p.strip() for p in self.pieces[start:])
        seen = self._starts[key]
        seen.append(start)
        if len(seen) >= self.repeats:
            self.loop_start = seen[1]  # keep one copy of the repeated text, drop its repetitions
            return True
        return False

    def text(self) -> str:
        """The answer so far, cut before the loop when one was detected."""
        end = len(self.pieces) if self.loop_start is None else self.loop_start
        return "".join(self.pieces[:end])


def repeated_run(tokens: Sequence, n: int = 8, repeats: int = 3) -> tuple | None:
    """The first n-token run that occurs `repeats` or more times in `tokens`, else None."""
    counts: dict[tuple, int] = defaultdict(int)
    for i in range(len(tokens) - n + 1):
        key = tuple(tokens[i:i + n])
        counts[key] += 1
        if counts[key] >= repeats:
            return key
    return None
