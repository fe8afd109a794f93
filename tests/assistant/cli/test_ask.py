"""`onboard ask` on the real default model, and its error paths."""
import json
import subprocess
import sys

import pytest


def test_ask_json_paris(run_cli):
    code, out, err = run_cli("ask", "--json", "--max-tokens", "48", "--temperature", "0", "What is the capital city of France?")
    assert code == 0, err
    data = json.loads(out)
    assert "paris" in data["answer"].lower()
    assert data["model"] == "smollm2-135m" and data["mode"] == "plain"
    assert data["tokens_per_s"] > 0  # speed itself is a bench/ matter, not a timed test


def test_ask_streams_plain_text(run_cli):
    code, out, err = run_cli("ask", "--max-tokens", "16", "Say hello.")
    assert code == 0 and out.strip()
    assert "tok/s" in err


@pytest.mark.parametrize("argv,needle", [
    (["ask", ""], "empty question"),
    (["ask", "--model", "no-such-model", "hi"], "unknown model"),
    (["ask", "--mode", "telepathy", "hi"], "unknown mode"),
])
def test_ask_bad_input(run_cli, argv, needle):
    code, out, err = run_cli(*argv)
    assert code != 0
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_truncated_gguf_is_clear_error(run_cli, smollm_gguf, tmp_path):
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(smollm_gguf.read_bytes()[:1_000_000])
    code, _, err = run_cli("ask", "--model", str(bad), "hi")
    assert code != 0 and "cannot load model" in err
    assert len(err.strip().splitlines()) == 1


def test_console_script_runs_without_traceback(tmp_path):
    """The installed entry point: one-line error, non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "--model", str(tmp_path / "x.gguf"), "hi"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("onboard: error:") and "Traceback" not in proc.stderr
