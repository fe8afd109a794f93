"""Zero egress for the two commands every user runs (issue 20, defect 2): `onboard index` and
`onboard ask --mode rag` under the egress guard (sockets and DNS lookups), and ONNX Runtime's
telemetry switched off by the package itself (it wrote ~/.cache/Microsoft/ and looked up its
collector's name from C, where the Python guard cannot see it; tests/strace_egress.py checks that
from the kernel side)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import egress_guard

ROOT = Path(__file__).resolve().parents[2]
DOCS = {"install.md": "# Install\n\nRun `pip install widget`, then `widget init` to create a project.\n",
        "config.md": "# Configuration\n\nThe widget reads `widget.toml`. Set `port = 8080` to change the port.\n"}


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_guard_blocks_every_dns_entry_point():
    for lookup in (lambda: socket.getaddrinfo("example.org", 443), lambda: socket.gethostbyname("example.org"),
                   lambda: socket.gethostbyname_ex("example.org")):
        with pytest.raises(egress_guard.EgressBlocked, match="name lookup"):
            lookup()
    assert socket.gethostbyname("localhost")


def test_index_and_ask_rag_under_the_guard(run_cli, corpus):
    code, _, err = run_cli("index", str(corpus), "--index", "egress")
    assert code == 0, err
    code, out, err = run_cli("ask", "--mode", "rag", "--index", "egress", "--max-tokens", "16",
                             "--temperature", "0", "How do I change the port?")
    assert code == 0, err
    assert out.strip()


def test_package_switches_off_third_party_telemetry():
    import assistant  # noqa: F401

    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    assert os.environ["ANONYMIZED_TELEMETRY"] == "False" and os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"


def test_index_writes_nothing_outside_onboard_home(tmp_path, corpus):
    """A fresh HOME and none of the switches set from outside: only the package sets them."""
    home = tmp_path / "home"
    onboard_home = home / "onboard"
    onboard_home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "ORT_", "ANONYMIZED"))}
    env.update(HOME=str(home), ONBOARD_HOME=str(onboard_home), XDG_CACHE_HOME=str(home / ".cache"))
    proc = subprocess.run([sys.executable, "-m", "assistant.cli", "index", str(corpus), "--index", "egress"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    outside = [str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and onboard_home not in p.parents]
    assert outside == []  # was: .cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_strace_sees_no_connect_outside_loopback():
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "strace_egress.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
