"""The chat says when its index is older than its folder and refreshes it (F9 / the button):
the real app under Textual's Pilot, a real Chroma index, real files changed on disk."""
from __future__ import annotations

from assistant.rag.index import index_path
from assistant.settings import load_settings
from assistant.tui import freshness
from assistant.tui.freshness import StaleIndexNotice
from tests.assistant.tui.test_app import SIZE, make_app, sync, wait_for


def _docs(folder):
    folder.mkdir()
    (folder / "install.md").write_text("# Install\n\nInstall the yak shaver with pip.\n", encoding="utf-8")
    (folder / "usage.md").write_text("# Usage\n\nRun yak-shave on a yak.\n", encoding="utf-8")


@sync
async def test_stale_index_notice_and_refresh(smollm, onboard_home, tmp_path, monkeypatch):
    monkeypatch.setattr(freshness, "STALE_CHECK_S", 0.2)  # the periodic check, quickly
    docs = tmp_path / "docs"
    _docs(docs)
    index_path(load_settings(), docs, name="yak", progress=False)
    app = make_app(mode="rag", index="yak")
    async with app.run_test(size=SIZE) as pilot:
        notice = app.query_one(StaleIndexNotice)
        await wait_for(pilot, lambda: app.session._retrievers.get("yak") is not None, what="index loaded")
        await pilot.pause(0.5)  # the check after loading and two periodic ones have run
        assert not notice.display and app.stale is None

        (docs / "install.md").write_text("# Install\n\nInstall the yak shaver with conda now.\n", encoding="utf-8")
        (docs / "faq.md").write_text("# FAQ\n\nYaks are shaved in spring, says the quokka council.\n",
                                     encoding="utf-8")
        await wait_for(pilot, lambda: notice.display, timeout=30, what="stale notice")
        assert "Index yak is older than its folder (1 changed, 1 added files)" in notice.message
        before = app.session.retriever("yak")

        await pilot.press("f9")
        await wait_for(pilot, lambda: app.session._retrievers.get("yak") not in (None, before), timeout=120,
                       what="refresh and reopened retriever")
        await wait_for(pilot, lambda: not app.refreshing, timeout=30, what="refresh done")
        await pilot.pause(0.5)
        assert not notice.display and app.stale is None
        after = app.session.retriever("yak")
        assert after.search("quokka council", 1)[0].path == "faq.md"

        (docs / "usage.md").unlink()  # the button does what F9 does
        await wait_for(pilot, lambda: notice.display, timeout=30, what="stale notice after a delete")
        assert "(1 removed file)" in notice.message
        app.clear_notifications()  # the "refreshed" toast sits where the button is
        await pilot.pause()
        assert await pilot.click("#refresh-index")
        await wait_for(pilot, lambda: not app.refreshing and not notice.display, timeout=120, what="refresh")
        assert {h.path for h in app.session.retriever("yak").search("yak", 5)} == {"install.md", "faq.md"}
