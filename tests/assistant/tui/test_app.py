"""`onboard chat` driven headless with Textual's Pilot, on the real SmolLM2-135M GGUF.

Each test runs the real app: real llama.cpp generation in a worker thread, real SQLite feedback,
real history files, and (for sources) a real Chroma index built from two small Markdown files.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time

import pytest
from textual.widgets import Collapsible, Static

from assistant.chat.history import HistoryStore, Turn
from assistant.settings import load_settings
from assistant.tui.app import ChatApp
from assistant.tui.widgets import (
    AnswerView,
    CorrectionScreen,
    HistoryScreen,
    PickScreen,
    ProblemScreen,
    SourcesPanel,
    StatusBar,
    link_citations,
)

SIZE = (120, 40)


def sync(fn):
    """Run an async Pilot scenario as a plain pytest test (no asyncio plugin needed)."""
    @functools.wraps(fn)
    def wrapper(*args, **kw):
        return asyncio.run(fn(*args, **kw))
    return wrapper


def make_app(**kw) -> ChatApp:
    # n_threads/n_ctx/seed match the session `smollm` fixture, so the loaded model is shared.
    settings = load_settings().replace(n_threads=2, n_ctx=4096, seed=0)
    kw.setdefault("mode", "plain")
    kw.setdefault("max_tokens", 32)
    return ChatApp(settings, **kw)


async def wait_for(pilot, predicate, timeout=180.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def ask(pilot, app: ChatApp, question: str) -> AnswerView:
    app.query_one("#question").value = question
    app.query_one("#question").focus()
    await pilot.press("enter")
    await wait_for(pilot, lambda: len(app.query(AnswerView)) and app.query(AnswerView).last().turn.question == question,
                   what="answer view")
    return app.query(AnswerView).last()


@contextlib.asynccontextmanager
async def long_answer_streaming(question: str):
    """An app (max 400 tokens) asked for a long answer, entered once the answer is streaming;
    yields (app, pilot, answer view)."""
    app = make_app(max_tokens=400)
    async with app.run_test(size=SIZE) as pilot:
        view = await ask(pilot, app, question)
        await wait_for(pilot, lambda: len(view.turn.answer) > 10, what="first tokens")
        yield app, pilot, view


def status_text(app: ChatApp) -> str:
    return str(app.query_one(StatusBar).render())


def feedback_rows(app: ChatApp) -> list[tuple]:
    with sqlite3.connect(app.settings.feedback_db) as db:
        return db.execute("SELECT answer_id, rating, correction, prompt, answer FROM feedback ORDER BY id").fetchall()


@sync
async def test_ask_streams_rate_copy_and_quit(smollm):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert app.focused is app.query_one("#question")  # interactive at once, model loads behind
        question = "Describe in a few sentences what a compiler does."  # a long answer: many stream steps
        view = await ask(pilot, app, question)
        await wait_for(pilot, lambda: not app.busy, what="answer to finish")
        turn = view.turn
        assert turn.answer and not turn.stopped
        # streamed token by token to the UI (MarkdownStream may coalesce redraws on a fast machine)
        assert view.pieces_posted == turn.timings["completion_tokens"] >= 2
        assert view.body.source.strip() == turn.answer
        assert turn.timings["completion_tokens"] > 0 and turn.timings["tokens_per_s"] > 0
        assert "tok/s" in status_text(app) and "TTFT" in status_text(app) and "ready" in status_text(app)

        await pilot.press("f6")  # thumbs up
        await pilot.pause()
        rows = feedback_rows(app)
        assert rows == [(turn.answer_id, 1, "", question, turn.answer)]

        await pilot.press("f7")  # thumbs down, with a correction
        await wait_for(pilot, lambda: isinstance(app.screen, CorrectionScreen), what="correction dialog")
        app.screen.query_one("#correction").insert("A compiler translates source code into machine code.")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, CorrectionScreen), what="dialog closed")
        assert feedback_rows(app) == [(turn.answer_id, -1, "A compiler translates source code into machine code.",
                                       question, turn.answer)]

        await pilot.press("f8")
        assert app.clipboard == turn.answer

        svg = app.export_screenshot()  # what docs/images/chat.svg is made of
        assert svg.startswith("<svg") and "compiler" in svg and "tok/s" in svg

        await pilot.press("ctrl+q")
    assert app.return_code == 0
    saved = HistoryStore(app.settings.home / "history").load(app.conv.id)
    assert saved.turns[0].answer == turn.answer and saved.turns[0].rating == -1


@sync
async def test_escape_stops_running_answer(smollm):
    async with long_answer_streaming("Write a long story about a robot who learns to paint.") as (app, pilot, view):
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.busy, timeout=30, what="stop")
        assert view.turn.stopped
        assert view.turn.timings["completion_tokens"] < 400
        assert "stopped" in status_text(app)
        # the app stays usable: the next question gets a full answer
        app.max_tokens = 16
        view2 = await ask(pilot, app, "Say hello.")
        await wait_for(pilot, lambda: not app.busy, what="second answer")
        assert view2.turn.answer and not view2.turn.stopped


@sync
async def test_quit_mid_answer_keeps_partial_answer(smollm):
    async with long_answer_streaming("Write a long story about a dragon.") as (app, pilot, _view):
        await pilot.press("ctrl+c")
    saved = HistoryStore(app.settings.home / "history").load(app.conv.id)
    assert saved.turns[0].stopped and len(saved.turns[0].answer) > 10


@pytest.fixture
def tiny_index(onboard_home, tmp_path):
    from assistant.rag.index import index_path

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "install.md").write_text(
        "# Install\n\n## With pip\n\nInstall the zebra server with `pip install zebra-server`, then start it "
        "with `zebra serve --port 7777`. The default port is 7777.\n", encoding="utf-8")
    (docs / "config.md").write_text(
        "# Configuration\n\n## Threads\n\nSet the number of worker threads with the `ZEBRA_THREADS` "
        "environment variable. The default is four threads.\n", encoding="utf-8")
    index_path(load_settings(), docs, name="tiny", progress=False)
    return "tiny"


@sync
async def test_switch_modes_and_show_sources(smollm, tiny_index):
    app = make_app()  # settings' index "docs" does not exist here; pick "tiny" with F4
    async with app.run_test(size=SIZE) as pilot:
        assert app.mode == "plain" and not app.query_one(SourcesPanel).display
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen) and app.screen.query("#pick-list"),
                       what="index picker")
        await pilot.pause()
        await pilot.press("down", "enter")  # "docs" (current) -> "tiny"
        await wait_for(pilot, lambda: app.index_name == tiny_index, what="index picked")
        await pilot.press("f2")
        assert app.mode == "rag"
        assert "mode rag" in status_text(app) and "index tiny" in status_text(app)
        view = await ask(pilot, app, "Which port does the zebra server use?")
        await wait_for(pilot, lambda: not app.busy, what="rag answer")
        refs = [s["ref"] for s in view.turn.sources]
        assert refs and refs[0].startswith("install.md")  # the port question hits the install page
        panel = app.query_one(SourcesPanel)
        assert panel.display
        titles = [str(c.title) for c in panel.query(Collapsible)]
        assert titles[0].startswith("[1] install.md") and "(0." in titles[0]
        assert all(c.collapsed for c in panel.query(Collapsible))
        assert panel.expand(1) and not panel.query(Collapsible).first().collapsed
        assert view.turn.mode == "rag" and view.turn.index == "tiny"
        await pilot.press("f2")
        assert app.mode == "hybrid"
        await pilot.press("f2")
        assert app.mode == "plain" and not app.query_one(SourcesPanel).display


@sync
async def test_missing_index_shows_fix_and_falls_back_to_plain():
    app = make_app(mode="rag", index="no-such-index")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ProblemScreen) and app.screen.query("#fix-command"), timeout=60, what="problem screen")
        fix = str(app.screen.query_one("#fix-command").render())
        assert fix.startswith("onboard index") and "no-such-index" in fix
        assert app.mode == "plain"
        await pilot.press("enter")
        assert not isinstance(app.screen, ProblemScreen)


@sync
async def test_model_picker_lists_registry(smollm):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen) and app.screen.query("#pick-list"),
                       what="model picker")
        options = app.screen.query_one("#pick-list")
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert ids[0] == "smollm2-135m" and "qwen2.5-coder-1.5b" in ids
        await pilot.press("enter")  # the current model: nothing reloads
        assert app.model_name == "smollm2-135m" and not isinstance(app.screen, PickScreen)


@sync
async def test_missing_model_shows_fix():
    app = make_app(model="no-such-model")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ProblemScreen) and app.screen.query("#fix-command"), what="problem screen")
        assert app.problems == ["Model not available"]
        assert "onboard models list" in str(app.screen.query_one("#fix-command").render())
        assert "no model" in status_text(app)


@sync
async def test_history_browse_and_new_chat(onboard_home):
    from assistant.chat.history import Conversation, Turn

    store = HistoryStore(onboard_home / "history")
    old = Conversation.new()
    old.turns.append(Turn(question="How do I start zebra?", answer="Run `zebra serve` [1].",
                          sources=[{"ref": "install.md#Install", "text": "zebra serve", "score": 0.8}]))
    store.save(old)
    app = make_app()
    app.load_model = lambda: None  # this test needs no model
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="history screen")
        await pilot.press("enter")  # first (newest) conversation
        await wait_for(pilot, lambda: app.conv.id == old.id, what="conversation loaded")
        view = app.query(AnswerView).last()
        assert view.turn.answer == "Run `zebra serve` [1]."
        assert "(#source-1)" in view.body.source  # the citation links to the sources panel
        await pilot.press("ctrl+n")
        assert app.conv.id != old.id and not app.query(AnswerView)


def test_link_citations_only_links_existing_sources():
    assert link_citations("See [1] and [3].", 2) == "See [\\[1\\]](#source-1) and [3]."
    assert link_citations("[x](y) [2](z)", 2) == "[x](y) [2](z)"


@pytest.mark.slow
@sync
async def test_first_run_builds_default_index_with_progress(smollm):
    """No index yet, rag mode: the app indexes the project's docs/ behind a progress screen."""
    from assistant.rag.store import index_exists
    from assistant.tui.widgets import IndexingScreen

    app = make_app(mode="rag")
    seen_progress = False
    async with app.run_test(size=SIZE) as pilot:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not index_exists(app.settings, "docs"):
            seen_progress |= isinstance(app.screen, IndexingScreen)
            await asyncio.sleep(0.05)
        await wait_for(pilot, lambda: not isinstance(app.screen, IndexingScreen), what="progress screen closed")
        assert seen_progress and index_exists(app.settings, "docs") and app.mode == "rag"
        view = await ask(pilot, app, "How do I stop an answer in onboard chat?")
        await wait_for(pilot, lambda: not app.busy, timeout=300, what="rag answer")
        assert view.turn.sources and all(s["path"].endswith(".md") for s in view.turn.sources)


@sync
async def test_follow_up_shows_the_searched_query(smollm, tiny_index):
    """A follow-up in rag mode is searched as a standalone question, and the sources panel says so."""
    app = make_app(mode="rag", index=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        app.conv.turns.append(Turn(question="How do I install the zebra server?", mode="rag",
                                   answer="Install it with pip install zebra-server.", index=tiny_index))
        view = await ask(pilot, app, "Which port does it listen on?")
        await wait_for(pilot, lambda: not app.busy, what="rag answer")
        turn = view.turn
        # a standalone rewrite names what "it" was (or falls back to the previous question + this one)
        assert turn.query != turn.question and {"zebra", "server"} & set(turn.query.lower().rstrip("?").split())
        shown = app.query_one(SourcesPanel).query_one("#searched-query", Static)
        assert str(shown.render()) == f"searched: {turn.query}"
        assert turn.sources and turn.sources[0]["ref"].startswith("install.md")
        # saved with the conversation, shown again when it is reopened
        assert HistoryStore(app.settings.home / "history").load(app.conv.id).turns[-1].query == turn.query
