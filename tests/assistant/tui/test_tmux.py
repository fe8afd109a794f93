"""The real `onboard chat` process in a real terminal (tmux): type a question, read the answer
off the screen, quit with Ctrl+Q, and check the conversation was saved."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
ROOT = Path(__file__).resolve().parents[3]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_screen(session: str, predicate, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(session)
        if predicate(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; screen was:\n{text}")


def test_chat_in_tmux_answers_on_screen(onboard_home):
    session = f"onboard-test-{uuid.uuid4().hex[:8]}"
    cmd = (f"cd {ROOT} && ONBOARD_HOME={onboard_home} ONBOARD_N_THREADS=2 "
           f"{sys.executable} -m assistant.cli chat --mode plain --max-tokens 24; "
           f"echo EXIT-CODE-$?; sleep 30")
    tmux("new-session", "-d", "-s", session, "-x", "140", "-y", "40", cmd)
    try:
        wait_screen(session, lambda s: "ready" in s, 90, "the model to load")
        tmux("send-keys", "-t", session, "-l", "What is the capital of France?")
        tmux("send-keys", "-t", session, "Enter")
        history = onboard_home / "history"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not list(history.glob("*.json")):
            time.sleep(0.2)
        conv = json.loads(next(history.glob("*.json")).read_text())
        answer = conv["turns"][0]["answer"]
        assert answer
        words = answer.split()[:3]  # the first words are on screen even if the Markdown re-wraps lines
        flat = " ".join(wait_screen(session, lambda s: all(w in s for w in words), 30, f"answer words {words}").split())
        assert " ".join(words) in flat
        assert "tok/s" in flat and "What is the capital of France?" in flat
        tmux("send-keys", "-t", session, "C-q")
        wait_screen(session, lambda s: "EXIT-CODE-0" in s, 30, "a clean exit")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
