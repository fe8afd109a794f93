"""`onboard chat`: the offline terminal chat (Textual).

    onboard chat                       # default model, mode and index from settings
    onboard chat --mode hybrid --model my-nitro-model --index docs

Keys: Enter ask · Esc stop the answer · F2 mode · F3 model · F4 index · F5 history ·
F6 👍 · F7 👎 (+ correction) · F8 copy answer · F9 refresh a stale index ·
Ctrl+N new chat · Ctrl+Q / Ctrl+C quit.

The screen is interactive before llama.cpp, Chroma or torch are imported: the model and the
index load in worker threads (`@work(thread=True)`) and the status bar says "loading…". Answers
stream from a worker that forwards each token to a MarkdownStream on the UI thread, as in
Textual's examples/mother.py. History is saved after every answer and on quit (partial answers
included); ratings go straight to the SQLite feedback store.
"""
from __future__ import annotations

import threading
import time

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Static

from assistant.chat.history import Conversation, HistoryStore, Turn
from assistant.chat.modes import MODES, check_mode
from assistant.chat.session import Session
from assistant.errors import OnboardError
from assistant.settings import Settings
from assistant.tui.feedback import FeedbackActions
from assistant.tui.freshness import IndexFreshness, StaleIndexNotice
from assistant.tui.widgets import (
    AnswerView,
    HistoryScreen,
    IndexingScreen,
    PickScreen,
    ProblemScreen,
    PromptView,
    SourcesPanel,
    StatusBar,
)

WELCOME = ("[b]onboard[/b] answers questions about your docs, offline. Type a question and press Enter.\n"
           "[b]F2[/b] switches mode (plain / rag / hybrid), [b]Esc[/b] stops an answer, [b]F6[/b]/[b]F7[/b] rate it, "
           "[b]F5[/b] browses history, [b]Ctrl+Q[/b] quits.")


class ChatApp(IndexFreshness, FeedbackActions, App):
    TITLE = "onboard"
    CSS_PATH = "chat.tcss"
    AUTO_FOCUS = "#question"
    BINDINGS = [
        Binding("ctrl+q", "quit", "quit", priority=True),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("escape", "stop", "stop"),
        Binding("f2", "cycle_mode", "mode"),
        Binding("f3", "pick_model", "model"),
        Binding("f4", "pick_index", "index"),
        Binding("f5", "history", "history"),
        Binding("f6", "rate(1)", "👍"),
        Binding("f7", "rate(-1)", "👎"),
        Binding("f8", "copy_answer", "copy"),
        Binding("f9", "refresh_index", "refresh index", show=False),  # freshness.py
        Binding("ctrl+n", "new_chat", "new chat"),
    ]

    def __init__(self, settings: Settings, *, mode: str | None = None, model: str | None = None,
                 index: str | None = None, max_tokens: int | None = None, first_run_index: bool = True):
        super().__init__()
        self.settings = settings
        self.mode = check_mode(mode or settings.mode)
        self.model_name = model
        self.index_name = index or settings.index
        self.max_tokens = max_tokens or settings.max_tokens
        self.first_run_index = first_run_index
        self.history = HistoryStore(settings.home / "history")
        self.conv = Conversation.new()
        self._feedback = None
        self.session = Session(settings, model_name=model, index=self.index_name, progress=False)
        self.model_name = self.session.model_name  # the default, or the best installed when it is missing
        self._save_lock = threading.Lock()
        self._cancel: threading.Event | None = None
        self._quitting = False
        self.state = "loading model…"
        self.last_stats: dict = {}
        self.problems: list[str] = []  # titles of problem screens shown (for tests and logs)

    # --- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield VerticalScroll(Static(WELCOME, classes="hint welcome"), id="chat")
            yield SourcesPanel(id="sources")
        yield StaleIndexNotice(id="stale-index")
        yield Input(placeholder="Ask about your docs…  (Enter to send)", id="question")
        yield StatusBar(id="status")
        yield Footer()

    def _index_names(self) -> list[str]:
        from assistant.rag.store import list_indexes

        return list_indexes(self.settings)

    def on_mount(self) -> None:
        self.sub_title = "offline docs assistant"
        self.query_one(SourcesPanel).display = self.mode != "plain"
        self._set_state("loading model…")
        if self.session.notice:
            self.notify(self.session.notice, severity="warning", timeout=15)
        self.call_after_refresh(self._start_loading)  # paint first: imports in the worker hold the GIL

    def _start_loading(self) -> None:
        self.load_model()
        if self.mode != "plain":
            self.load_index(self.index_name)

    # --- thread <-> UI -------------------------------------------------------------------
    def _ui(self, fn, *args, **kw):
        """call_from_thread that gives up when the app is closing (never blocks shutdown)."""
        if self._quitting or not self.is_running:
            return None
        try:
            return self.call_from_thread(fn, *args, **kw)
        except RuntimeError:  # the app stopped between the check and the call
            return None

    def _set_state(self, state: str | None = None) -> None:
        if state is not None:
            self.state = state
        self.query_one(StatusBar).show(model=self.model_name, mode=self.mode, index=self.index_name,
                                       state=self.state, tps=self.last_stats.get("tokens_per_s"),
                                       ttft_ms=self.last_stats.get("ttft_ms"))

    def show_problem(self, title: str, message: str, fix: str = "") -> None:
        self.problems.append(title)
        self.push_screen(ProblemScreen(title, message, fix))

    # --- model and index (worker threads) ------------------------------------------------
    def get_model(self):
        self.session.model_name = self.model_name
        return self.session.model()

    @work(thread=True, group="model")
    def load_model(self) -> None:
        import textual.widgets.markdown  # noqa: F401  (warm the import the first answer needs)

        try:
            self.get_model()
        except Exception as e:  # OnboardError says what to do; anything else still gets a screen
            self._ui(self._model_problem, str(e) if isinstance(e, OnboardError) else f"{type(e).__name__}: {e}")
            return
        self._ui(self._set_state, "ready")

    def _model_problem(self, message: str) -> None:
        fix = message.split("install it with:", 1)[1].strip() if "install it with:" in message else \
            "onboard models list      # then: onboard chat --model NAME"
        self._set_state("no model")
        self.show_problem("Model not available", message, fix)

    def get_retriever(self, name: str):
        return self.session.retriever(name, build_first=self._build_first_index if self.first_run_index else None)

    def _build_first_index(self, corpus) -> None:
        """First run: the default index "docs" over the project's docs/, with a progress screen."""
        from assistant.rag.index import index_path

        screen = IndexingScreen(str(corpus))
        self._ui(self.push_screen, screen)
        self._ui(self._set_state, "indexing docs…")
        try:
            index_path(self.settings, corpus, name="docs", progress=False)
        finally:
            self._ui(screen.dismiss)

    @work(thread=True, group="index")
    def load_index(self, name: str) -> None:
        try:
            self.get_retriever(name)
        except Exception as e:
            self._ui(self._index_problem, name, str(e) if isinstance(e, OnboardError) else f"{type(e).__name__}: {e}")
            return
        self._ui(self._set_state, None)
        self._ui(self.check_index_fresh)

    def _index_problem(self, name: str, message: str) -> None:
        fix = message.rsplit(" with:", 1)[1].strip() if " with:" in message else f"onboard index PATH --index {name}"
        if self.mode != "plain":
            self.set_mode("plain")
            self.notify("switched to plain mode until the index exists", severity="warning")
        self.show_problem("Docs index not available", message, fix)

    # --- asking --------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._cancel is not None

    @on(Input.Submitted, "#question")
    async def ask(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        if self.busy:
            self.notify("an answer is still running: press Esc to stop it", severity="warning")
            return
        event.input.clear()
        turn = Turn(question=question, mode=self.mode, model=self.model_name,
                    index=self.index_name if self.mode != "plain" else "")
        history = self.conv.pairs()
        self.conv.turns.append(turn)
        chat = self.query_one("#chat", VerticalScroll)
        view = AnswerView(turn)
        await chat.mount_all([PromptView(question), view])
        chat.anchor()
        self._cancel = threading.Event()
        await self.query_one(SourcesPanel).show([])
        self.answer(turn, view, history, self._cancel)

    @work(thread=True, group="answer")
    def answer(self, turn: Turn, view: AnswerView, history: list, cancel: threading.Event) -> None:
        from textual.widgets import Markdown

        try:
            if not self.session.model_loaded(self.model_name):
                self._ui(self._set_state, "loading model…")
            self.get_model()
            if turn.mode != "plain":
                self._ui(self._set_state, "retrieving…" if turn.mode == "rag" else "drafting…")
                self.get_retriever(turn.index)
            start = time.perf_counter()
            job = self.session.job(turn.question, mode=turn.mode, index=turn.index, history=history,
                                   max_tokens=self.max_tokens, cancel=cancel)
            turn.sources = [h.to_dict() for h in job.prepare()]
            turn.query = job.result.query or ""
            if turn.sources:
                self._ui(self._show_sources, turn.sources, turn.query)
            self._ui(self._set_state, "answering…  (Esc stops)")
            stream = self._ui(Markdown.get_stream, view.body)
            pieces: list[str] = []
            for piece in job.stream():
                now = time.perf_counter()
                if not pieces:
                    first = now
                    self.last_stats = {"ttft_ms": (now - start) * 1000}
                elif len(pieces) % 8 == 0:  # live speed in the status bar
                    self.last_stats["tokens_per_s"] = len(pieces) / max(now - first, 1e-6)
                    self._ui(self._set_state, None)
                pieces.append(piece)
                turn.answer = "".join(pieces)  # kept current so a quit mid-answer saves it
                if stream is not None:
                    self._ui(stream.write, piece)
                    view.pieces_posted += 1
            if stream is not None:
                self._ui(stream.stop)
            turn.answer, turn.stopped = job.result.answer, job.result.stopped
            turn.timings = {**job.result.timings, "ttft_ms": round(self.last_stats.get("ttft_ms", 0), 1)}
            self.last_stats = {"tokens_per_s": turn.timings.get("tokens_per_s"), "ttft_ms": turn.timings["ttft_ms"]}
        except OnboardError as e:
            turn.error = str(e)
            if turn.mode != "plain" and "index" in str(e):
                self._ui(self._index_problem, turn.index, str(e))
        except Exception as e:  # keep the app alive; the message says what broke
            turn.error = f"internal error: {type(e).__name__}: {e}"
        finally:
            if cancel.is_set():
                turn.stopped = True
            self.save_history()
            self._ui(self._answer_done, view)

    async def _show_sources(self, sources: list[dict], query: str = "") -> None:
        await self.query_one(SourcesPanel).show(sources, query)

    async def _answer_done(self, view: AnswerView) -> None:
        await view.show_final()
        self._set_state("stopped" if view.turn.stopped else "ready")
        self._cancel = None  # last: "not busy" means the answer is fully shown

    def save_history(self) -> None:
        with self._save_lock:
            self.history.save(self.conv)

    # --- actions -------------------------------------------------------------------------
    def action_stop(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self._set_state("stopping…")

    async def action_quit(self) -> None:
        self._quitting = True
        if self._cancel is not None:
            self._cancel.set()
            running = self.conv.turns[-1] if self.conv.turns else None
            if running is not None:
                running.stopped = True  # saved now with its partial text; the worker saves again when it ends
        self.save_history()
        self.exit()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.query_one(SourcesPanel).display = mode != "plain"
        self._set_state()
        if mode != "plain":
            self.load_index(self.index_name)

    def action_cycle_mode(self) -> None:
        self.set_mode(MODES[(MODES.index(self.mode) + 1) % len(MODES)])

    def action_pick_model(self) -> None:
        from assistant.llm.registry import list_models

        rows = [(m.name, f"{m.name:<22} {m.params:>5} {m.quant:<7} {m.source:<8} "
                 + (m.description if m.installed else f"not installed: {m.install}"), m.installed)
                for m in list_models(self.settings)]
        if self.model_name not in [r[0] for r in rows]:
            rows.append((self.model_name, self.model_name, True))
        self.push_screen(PickScreen("Model", rows, self.model_name), callback=self.set_model)

    def set_model(self, name: str | None) -> None:
        if name and name != self.model_name:
            self.model_name = name
            self._set_state("loading model…")
            self.load_model()

    def action_pick_index(self) -> None:
        names = sorted({self.index_name, *self._index_names()})
        self.push_screen(PickScreen("Docs index", [(n, n, True) for n in names], self.index_name),
                         callback=self.set_index)

    def set_index(self, name: str | None) -> None:
        if name and name != self.index_name:
            self.index_name = name
            self._set_state()
            if self.mode != "plain":
                self.load_index(name)

    @on(Button.Pressed, ".rate")
    def _answer_button(self, event: Button.Pressed) -> None:
        if event.button.id == "copy":
            self.action_copy_answer(event.button)
        else:
            self.action_rate(1 if event.button.id == "rate-up" else -1, event.button)

    async def on_markdown_link_clicked(self, event) -> None:
        """A citation like [2] in an answer: open that source in the sources panel."""
        if not event.href.startswith("#source-"):
            return
        view = self._target_view(event.markdown)
        panel = self.query_one(SourcesPanel)
        panel.display = True
        if view is not None:
            await panel.show(view.turn.sources, view.turn.query)
        panel.expand(int(event.href.rsplit("-", 1)[1]))

    async def action_new_chat(self) -> None:
        if self.busy:
            self.notify("an answer is still running: press Esc first", severity="warning")
            return
        self.save_history()
        self.conv = Conversation.new()
        await self._show_conversation()
        self.notify("new chat")

    def action_history(self) -> None:
        if self.busy:
            self.notify("an answer is still running: press Esc first", severity="warning")
            return
        self.push_screen(HistoryScreen(self.history.list()), callback=self._open_conversation)

    async def _open_conversation(self, conv_id: str | None) -> None:
        if not conv_id or conv_id == self.conv.id:
            return
        self.save_history()
        self.conv = self.history.load(conv_id)
        await self._show_conversation()

    async def _show_conversation(self) -> None:
        chat = self.query_one("#chat", VerticalScroll)
        await chat.remove_children()
        widgets = [Static(WELCOME, classes="hint welcome")] if not self.conv.turns else []
        for turn in self.conv.turns:
            widgets += [PromptView(turn.question), AnswerView(turn)]
        await chat.mount_all(widgets)
        chat.scroll_end(animate=False)
        last = self.conv.turns[-1] if self.conv.turns else None
        await self.query_one(SourcesPanel).show(last.sources if last else [], last.query if last else "")


def run_chat(settings: Settings, **kw) -> int:
    app = ChatApp(settings, **kw)
    app.run()
    return 0
