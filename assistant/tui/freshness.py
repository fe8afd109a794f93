"""The chat app's index freshness: a notice when the index in use is older than its folder
(files changed, added or removed since it was built) and F9 / its button to refresh it.

The check (assistant.rag.watch.index_staleness: one stat per file, no reads) runs in a worker
thread after the index loads and every STALE_CHECK_S seconds; the refresh runs index_path (only
changed files are re-embedded) in a worker, then reopens the retriever so searches see it.
"""
from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from assistant.errors import OnboardError

STALE_CHECK_S = 30.0


class StaleIndexNotice(Horizontal):
    """One line above the question box, hidden while the index matches its folder."""

    DEFAULT_CSS = """
    StaleIndexNotice { height: auto; background: $warning 20%; padding: 0 1; display: none; }
    StaleIndexNotice Static { width: 1fr; padding: 1 0 0 0; }
    StaleIndexNotice Button { min-width: 16; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="stale-text", markup=False)
        yield Button("Refresh (F9)", id="refresh-index", variant="warning")

    @property
    def message(self) -> str:
        return str(self.query_one("#stale-text", Static).render()) if self.display else ""

    def show_stale(self, name: str, what: str) -> None:
        self.query_one("#stale-text", Static).update(
            f"Index {name} is older than its folder ({what}): answers may miss the changes.")
        self.query_one("#refresh-index", Button).disabled = False
        self.display = True

    def show_refreshing(self, name: str) -> None:
        self.query_one("#stale-text", Static).update(f"Refreshing index {name} (only changed files)…")
        self.query_one("#refresh-index", Button).disabled = True
        self.display = True

    def hide(self) -> None:
        self.display = False

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "refresh-index":
            event.stop()
            self.app.action_refresh_index()


class IndexFreshness:
    """Mixed into ChatApp (which provides settings, mode, index_name, session, _ui, notify,
    show_problem, and yields a StaleIndexNotice). Its F9 binding is declared in ChatApp:
    Textual reads BINDINGS from widget classes only."""

    refreshing = False
    stale: object = None  # the last Staleness seen for the index in use (None: fresh or unknown)

    def on_mount(self) -> None:  # called besides ChatApp.on_mount (Textual dispatches along the MRO)
        self.set_interval(STALE_CHECK_S, self._periodic_check)

    def _periodic_check(self) -> None:
        if self.mode != "plain" and not self.refreshing:
            self.check_index_fresh()

    @work(thread=True, group="freshness", exclusive=True)
    def check_index_fresh(self) -> None:
        from assistant.rag.watch import index_staleness

        name = self.index_name
        try:
            stale = index_staleness(self.settings, name)
        except OSError:  # the folder is being rewritten right now: the next check tells
            return
        self._ui(self._show_staleness, name, stale)

    def _show_staleness(self, name: str, stale) -> None:
        if name != self.index_name or self.refreshing:
            return
        notice = self.query_one(StaleIndexNotice)
        if not stale:
            self.stale = None
            notice.hide()
            return
        self.stale = stale  # the notice line says it; a toast would cover its button
        notice.show_stale(name, stale.describe())

    def action_refresh_index(self) -> None:
        if self.refreshing:
            self.notify("the index is already being refreshed", severity="warning")
            return
        self.refreshing = True
        self.query_one(StaleIndexNotice).show_refreshing(self.index_name)
        self.refresh_index(self.index_name)

    @work(thread=True, group="refresh")
    def refresh_index(self, name: str) -> None:
        from assistant.rag.watch import refresh_index

        try:
            stats = refresh_index(self.settings, name)
            self.session.reopen_retriever(name)
        except Exception as e:  # OnboardError says what to do; anything else still gets a screen
            self._ui(self._refresh_done, name, None, str(e) if isinstance(e, OnboardError) else
                     f"{type(e).__name__}: {e}")
            return
        self._ui(self._refresh_done, name, stats, "")

    def _refresh_done(self, name: str, stats, error: str) -> None:
        self.refreshing = False
        self.stale = None
        self.query_one(StaleIndexNotice).hide()
        if error:
            self.show_problem("Index refresh failed", error, f"onboard index PATH --index {name}")
        else:
            self.notify(f"index {name} refreshed: {stats.files_changed} files re-read, "
                        f"+{stats.added} -{stats.deleted} chunks")
        self.check_index_fresh()
