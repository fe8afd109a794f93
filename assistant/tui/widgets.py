"""Widgets and dialogs of the `onboard chat` TUI (the app itself is in app.py).

Only Textual and the standard library are imported here: the chat must become interactive
before llama.cpp, Chroma or torch are loaded.
"""
from __future__ import annotations

import re
import time

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Collapsible, Label, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from assistant.chat.history import Turn

_CITATION = re.compile(r"\[(\d{1,2})\](?!\()")


def link_citations(text: str, n_sources: int) -> str:
    """Turn "[2]" into a Markdown link to source 2 (only for sources that exist)."""
    def repl(m: re.Match) -> str:
        n = int(m.group(1))
        return f"[\\[{n}\\]](#source-{n})" if 1 <= n <= n_sources else m.group(0)

    return _CITATION.sub(repl, text)


class PromptView(Static):
    """The user's question (plain text: what was typed, exactly)."""

    def __init__(self, question: str, **kw):
        super().__init__(question, markup=False, **kw)


class AnswerView(Vertical):
    """One answer: Markdown body (streamed), a meta line, and rate / copy buttons."""

    def __init__(self, turn: Turn, **kw):
        super().__init__(**kw)
        self.turn = turn
        self.pieces_posted = 0  # tokens forwarded to the Markdown stream (it may batch redraws)

    def compose(self) -> ComposeResult:
        from textual.widgets import Markdown  # markdown-it + pygments: imported after the first paint

        text = link_citations(self.turn.answer, len(self.turn.sources)) if self.turn.answer else ""
        yield Markdown(text, open_links=False, classes="answer-body")
        with Horizontal(classes="answer-actions"):
            yield Static(self.meta_text(), classes="answer-meta")
            yield Button("👍", id="rate-up", classes="rate", tooltip="good answer (F6)")
            yield Button("👎", id="rate-down", classes="rate", tooltip="bad answer, optional correction (F7)")
            yield Button("copy", id="copy", classes="rate", tooltip="copy this answer (F8)")

    @property
    def body(self):
        """The answer's Markdown widget."""
        return self.query_one(".answer-body")

    def meta_text(self) -> str:
        t = self.turn
        bits = [t.model, t.mode]
        if t.timings.get("tokens_per_s"):
            bits.append(f"{t.timings['tokens_per_s']:.1f} tok/s")
        if t.timings.get("ttft_ms"):
            bits.append(f"first token {t.timings['ttft_ms']:.0f} ms")
        if t.sources:
            bits.append(f"{len(t.sources)} sources")
        if t.stopped:
            bits.append("stopped")
        if t.rating:
            bits.append("rated 👍" if t.rating > 0 else "rated 👎")
        return " · ".join(b for b in bits if b)

    def refresh_meta(self) -> None:
        self.query_one(".answer-meta", Static).update(self.meta_text())

    async def show_final(self) -> None:
        """Replace the streamed text with the final one, citations linked to the sources panel."""
        text = link_citations(self.turn.answer, len(self.turn.sources)) if self.turn.answer else "_(no answer)_"
        if self.turn.error:
            text = f"{self.turn.answer}\n\n**error:** {self.turn.error}".strip()
        await self.body.update(text)
        self.refresh_meta()


class SourcesPanel(VerticalScroll):
    """Chunks used for the selected answer: the query searched, then path#heading and score, text
    expandable."""

    def on_mount(self) -> None:
        self.border_title = "Sources"

    async def show(self, sources: list[dict], query: str = "") -> None:
        """`query`: what retrieval searched; for a follow-up, its standalone rewrite (condense.py)."""
        await self.remove_children()
        if not sources:
            await self.mount(Static("No sources: plain mode answers from the model alone.", classes="hint"))
            return
        items = [Static(f"searched: {query}", markup=False, classes="hint", id="searched-query")] if query else []
        for i, s in enumerate(sources, 1):
            ref = s.get("ref") or s.get("path", "?")
            items.append(Collapsible(Static(s.get("text", "").strip(), markup=False, classes="source-text"),
                                     title=f"[{i}] {ref}  ({s.get('score', 0):.3f})", collapsed=True,
                                     id=f"source-{i}"))
        await self.mount_all(items)

    def expand(self, n: int) -> bool:
        for c in self.query(Collapsible):
            c.collapsed = c.id != f"source-{n}"
            if not c.collapsed:
                self.scroll_to_widget(c)
        return any(not c.collapsed for c in self.query(Collapsible))


class StatusBar(Static):
    """model · mode · index · tokens/s · time to first token · state."""

    def show(self, *, model: str, mode: str, index: str, state: str, tps: float | None = None,
             ttft_ms: float | None = None) -> None:
        bits = [f"model [b]{model}[/b]", f"mode [b]{mode}[/b]"]
        if mode != "plain":
            bits.append(f"index [b]{index}[/b]")
        bits.append(f"{tps:.1f} tok/s" if tps else "– tok/s")
        bits.append(f"TTFT {ttft_ms:.0f} ms" if ttft_ms else "TTFT –")
        bits.append(state)
        self.update("  ·  ".join(bits))


class ProblemScreen(ModalScreen[None]):
    """A friendly stop sign: what is missing and the exact command that fixes it."""

    BINDINGS = [Binding("escape,enter", "dismiss", "close")]

    def __init__(self, title: str, message: str, fix: str = ""):
        super().__init__()
        self.title_text, self.message, self.fix = title, message, fix

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.message, markup=False)
            if self.fix:
                yield Label("Fix it with:")
                yield Static(self.fix, markup=False, classes="fix-command", id="fix-command")
            yield Button("OK", variant="primary", id="ok")

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(None)


class CorrectionScreen(ModalScreen["str | None"]):
    """After 👎: optionally type the answer that should have been given (becomes DPO 'chosen')."""

    BINDINGS = [Binding("escape", "cancel", "cancel"), Binding("ctrl+s", "save", "save", priority=True)]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        from textual.widgets import TextArea

        with Vertical(classes="dialog"):
            yield Label("👎  What should the answer have been? (optional)", classes="dialog-title")
            yield Static(self.question, markup=False, classes="hint")
            yield TextArea(id="correction")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="save")
                yield Button("Skip correction", id="skip")
                yield Button("Cancel", id="cancel")

    def action_save(self) -> None:
        self.dismiss(self.query_one("#correction").text.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        elif event.button.id == "skip":
            self.dismiss("")
        else:
            self.dismiss(None)


class HistoryScreen(ModalScreen["str | None"]):
    """Browse saved conversations; Enter opens one."""

    BINDINGS = [Binding("escape", "cancel", "close")]

    def __init__(self, summaries: list):
        super().__init__()
        self.summaries = summaries

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("History (Enter opens, Esc closes)", classes="dialog-title")
            if not self.summaries:
                yield Static("No saved conversations yet.", classes="hint")
            options = [Option(f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(s.updated))}  "
                              f"{s.title}  ({s.turns} turns)", id=s.id) for s in self.summaries]
            yield OptionList(*options, id="history-list")

    def on_mount(self) -> None:
        options = self.query_one("#history-list", OptionList)
        options.focus()
        if self.summaries:
            options.highlighted = 0

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class PickScreen(ModalScreen["str | None"]):
    """Pick one of a few named things (model, index); disabled rows say how to get them."""

    BINDINGS = [Binding("escape", "cancel", "close")]

    def __init__(self, title: str, options: list[tuple[str, str, bool]], current: str):
        super().__init__()
        self.title_text, self.options, self.current = title, options, current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"{self.title_text} (Enter picks, Esc closes)", classes="dialog-title")
            yield OptionList(*[Option(label, id=key, disabled=not ok) for key, label, ok in self.options],
                             id="pick-list")

    def on_mount(self) -> None:
        options = self.query_one("#pick-list", OptionList)
        options.focus()
        keys = [k for k, _, _ in self.options]
        if self.current in keys:
            options.highlighted = keys.index(self.current)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class IndexingScreen(ModalScreen[None]):
    """First run: building the default docs index (chunk, embed, store), with elapsed time."""

    def __init__(self, source: str):
        super().__init__()
        self.source, self.started = source, time.monotonic()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("First run: building the docs index", classes="dialog-title")
            yield Static(f"Indexing {self.source} so answers can cite the docs. This happens once; "
                         "later runs only re-embed changed files.", markup=False)
            yield ProgressBar(id="index-progress", total=None, show_eta=False)
            yield Static("loading the embedding model…", id="index-step", markup=False)

    def on_mount(self) -> None:
        self.set_interval(0.5, self._tick)

    def _tick(self) -> None:
        self.query_one("#index-step", Static).update(
            f"chunking and embedding… {time.monotonic() - self.started:.0f} s")
