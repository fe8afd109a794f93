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


BATCHING_Q = "What is continuous batching?"
BATCHING_A = "It groups several inference requests into one batch, which raises throughput."


def _follow_up(data):
    assert data["question"] == "How do I turn it on in Nitro?"
    assert "batching" in data["query"].lower()  # searched as a standalone question
    assert data["timings"]["condense_ms"] > 0
    assert "docs/features/cont-batch.md" in {s["path"] for s in data["sources"]}


def test_ask_with_turns_condenses_the_follow_up(run_cli, nitro_home_env):
    code, out, err = run_cli("ask", "--mode", "rag", "--index", "nitro", "--json", "--max-tokens", "8",
                             "--turn", BATCHING_Q, BATCHING_A, "How do I turn it on in Nitro?")
    assert code == 0, err
    _follow_up(json.loads(out))


def test_ask_with_history_file(run_cli, nitro_home_env, tmp_path):
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps([{"role": "user", "content": BATCHING_Q},
                                    {"role": "assistant", "content": BATCHING_A}]), encoding="utf-8")
    code, out, err = run_cli("ask", "--mode", "rag", "--index", "nitro", "--json", "--max-tokens", "8",
                             "--history", str(messages), "How do I turn it on in Nitro?")
    assert code == 0, err
    _follow_up(json.loads(out))
    code, out, err = run_cli("ask", "--mode", "rag", "--index", "nitro", "--max-tokens", "8",
                             "--history", str(messages), "How do I turn it on in Nitro?")
    assert code == 0 and "Searched: " in out  # the plain-text output says what was searched


@pytest.mark.parametrize("content,needle", [("{not json", "not valid JSON"), ('{"a": 1}', "expected [[question")])
def test_ask_bad_history_file(run_cli, tmp_path, content, needle):
    bad = tmp_path / "history.json"
    bad.write_text(content, encoding="utf-8")
    code, _, err = run_cli("ask", "--history", str(bad), "and then?")
    assert code != 0 and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
