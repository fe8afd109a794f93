"""The chat app's answer actions: rate (F6/F7, with a correction for 👎), copy (F8), and the
per-answer buttons (whose @on handler stays in app.py: Textual collects those per class). Ratings go straight to the SQLite feedback store (assistant.chat.feedback)."""
from __future__ import annotations

from assistant.tui.widgets import AnswerView, CorrectionScreen


class FeedbackActions:
    """Mixed into ChatApp (which provides settings, conv, busy, notify, save_history...)."""

    _feedback = None

    def _answer_views(self) -> list[AnswerView]:
        return list(self.query(AnswerView))

    def _target_view(self, widget=None) -> AnswerView | None:
        if widget is not None:
            for node in widget.ancestors_with_self:
                if isinstance(node, AnswerView):
                    return node
        views = [v for v in self._answer_views() if v.turn.answer]
        return views[-1] if views else None

    @property
    def feedback(self):
        if self._feedback is None:
            from assistant.chat.feedback import FeedbackStore

            self._feedback = FeedbackStore(self.settings.feedback_db)
        return self._feedback

    def rate(self, view: AnswerView, rating: int, correction: str = "") -> None:
        turn = view.turn
        if not turn.answer or (self.busy and view is self._answer_views()[-1]):
            self.notify("wait for the answer to finish before rating it", severity="warning")
            return
        self.feedback.record(turn.answer_id, prompt=turn.question, answer=turn.answer, rating=rating,
                             correction=correction, model=turn.model, mode=turn.mode,
                             sources=[s.get("ref", "") for s in turn.sources], conversation_id=self.conv.id)
        turn.rating = rating
        view.refresh_meta()
        self.save_history()
        self.notify("saved 👍 thanks" if rating > 0 else
                    ("saved 👎 with your correction" if correction else "saved 👎"))

    def action_rate(self, rating: int, widget=None) -> None:
        view = self._target_view(widget)
        if view is None:
            self.notify("no answer to rate yet", severity="warning")
        elif rating > 0:
            self.rate(view, 1)
        else:
            self.push_screen(CorrectionScreen(view.turn.question),
                             callback=lambda c: None if c is None else self.rate(view, -1, c))

    def action_copy_answer(self, widget=None) -> None:
        view = self._target_view(widget)
        if view is None:
            self.notify("no answer to copy yet", severity="warning")
            return
        self.copy_to_clipboard(view.turn.answer)
        self.notify("answer copied to the clipboard")
