"""Conversation history files: atomic save, load, newest-first listing, damaged files."""
from __future__ import annotations

import json
import time

import pytest

from assistant.chat.history import Conversation, HistoryStore, Turn
from assistant.errors import OnboardError


def test_round_trip_and_listing(onboard_home):
    store = HistoryStore(onboard_home / "history")
    older, newer = Conversation.new(), Conversation.new()
    older.turns.append(Turn(question="first   question\nabout zebra", answer="A1", ts=time.time() - 100))
    newer.turns.append(Turn(question="Q2", answer="A2", sources=[{"ref": "a.md#H", "score": 0.5}], rating=1))
    newer.turns.append(Turn(question="Q3", answer="", stopped=True))
    store.save(older)
    store.save(newer)
    listed = store.list()
    assert [s.id for s in listed] == [newer.id, older.id]
    assert listed[1].title == "first question about zebra" and listed[0].turns == 2
    loaded = store.load(newer.id)
    assert loaded.turns[0].sources == [{"ref": "a.md#H", "score": 0.5}] and loaded.turns[0].rating == 1
    assert loaded.pairs() == [("Q2", "A2")]  # unanswered turns never reach the model's context
    assert not list((onboard_home / "history").glob(".*tmp*"))


def test_empty_chat_is_not_saved(onboard_home):
    store = HistoryStore(onboard_home / "history")
    conv = Conversation.new()
    store.save(conv)
    assert store.list() == []


def test_damaged_file_is_skipped_in_list_and_clear_on_load(onboard_home):
    store = HistoryStore(onboard_home / "history")
    good = Conversation.new()
    good.turns.append(Turn(question="Q", answer="A"))
    store.save(good)
    bad_id = "20240101-000000-abcdef"
    (onboard_home / "history" / f"{bad_id}.json").write_text("{not json")
    assert [s.id for s in store.list()] == [good.id]
    with pytest.raises(OnboardError, match="damaged"):
        store.load(bad_id)


@pytest.mark.parametrize("conv_id", ["../etc/passwd", "nope", ""])
def test_bad_ids_are_rejected(onboard_home, conv_id):
    with pytest.raises(OnboardError, match="not a conversation id"):
        HistoryStore(onboard_home / "history").load(conv_id)


def test_unknown_fields_from_newer_versions_are_ignored(onboard_home):
    store = HistoryStore(onboard_home / "history")
    conv = Conversation.new()
    data = {"id": conv.id, "created": 1.0, "turns": [{"question": "Q", "answer": "A", "future_field": 1}]}
    (onboard_home / "history").mkdir(parents=True)
    (onboard_home / "history" / f"{conv.id}.json").write_text(json.dumps(data))
    assert store.load(conv.id).turns[0].answer == "A"
