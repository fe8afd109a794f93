"""Render the main `onboard chat` screen to an SVG for the docs (docs/images/chat.svg).

    .venv/bin/python bench/tui_snapshot.py                     # writes docs/images/chat.svg
    .venv/bin/python bench/tui_snapshot.py --out /tmp/chat.svg --question "How do I rate an answer?"

Runs the real app headless (App.run_test) in a temporary ONBOARD_HOME: indexes the project's
docs/, asks one question in rag mode with the default model, opens the first source, and saves
Textual's own screenshot (export_screenshot). Regenerate it when the screen layout changes.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def snapshot(out: Path, question: str, max_tokens: int) -> str:
    from assistant.rag.index import default_corpus_path, index_path
    from assistant.settings import load_settings
    from assistant.tui.app import ChatApp
    from assistant.tui.widgets import SourcesPanel

    settings = load_settings()
    index_path(settings, default_corpus_path(), name="docs", progress=True)
    app = ChatApp(settings, mode="rag", index="docs", max_tokens=max_tokens)
    async with app.run_test(size=(130, 42)) as pilot:
        app.query_one("#question").value = question
        await pilot.press("enter")
        await pilot.pause(0.5)
        deadline = time.monotonic() + 600
        while (app.busy or not app.conv.turns[-1].answer) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        app.query_one(SourcesPanel).expand(1)
        app.query_one("#question").value = ""
        await pilot.pause(0.5)
        svg = app.export_screenshot(title="onboard chat")
        await pilot.press("ctrl+q")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg, encoding="utf-8")
    return app.conv.turns[-1].answer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "chat.svg")
    ap.add_argument("--question", default="How do I stop an answer in onboard chat?")
    ap.add_argument("--max-tokens", type=int, default=96)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="onboard-snapshot-") as home:
        os.environ["ONBOARD_HOME"] = home
        answer = asyncio.run(snapshot(args.out, args.question, args.max_tokens))
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB); answer: {answer[:80]!r}…")
    return 0


if __name__ == "__main__":
    sys.exit(main())
