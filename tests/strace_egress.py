"""Zero egress, seen from the kernel: run `onboard index` and `onboard ask --mode rag` under
`strace -f -e trace=connect` and fail on any connect outside loopback and unix sockets, on any
DNS query (port 53, even to a loopback resolver such as 127.0.0.53) and on any file written
under $HOME outside ONBOARD_HOME (ONNX Runtime's telemetry wrote ~/.cache/Microsoft/).

The Python egress guard (tests/egress_guard.py) sees only Python sockets; this also sees C code
(ONNX Runtime, llama.cpp, curl inside a wheel). Needs strace (Debian: apt-get install strace);
without it the script says so and exits 0 unless --require.

    python tests/strace_egress.py [--model smollm2-135m] [--keep]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONNECT = re.compile(r"connect\(\d+, \{sa_family=(AF_\w+)(.*?)\}")
INET = re.compile(r'sin6?_port=htons\((\d+)\).*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")')
DOCS = {
    "install.md": "# Install\n\nRun `pip install widget` and then `widget init` to create a project.\n",
    "config.md": "# Configuration\n\nThe widget reads `widget.toml`. Set `port = 8080` to change the port.\n",
    "deploy.md": "# Deploy\n\nUse `widget deploy --target prod` after building with `widget build`.\n",
}


def bad_connects(log: str) -> list[str]:
    """The connect lines of an strace log that leave the machine or ask a DNS server."""
    bad = []
    for line in log.splitlines():
        m = CONNECT.search(line)
        if not m:
            continue
        family, rest = m.groups()
        if family not in ("AF_INET", "AF_INET6"):
            # unix sockets (also nscd's, which glibc asks for user names as well as hosts;
            # without nscd a DNS lookup shows up below as port 53) and netlink stay local
            continue
        a = INET.search(rest)
        port, addr = (int(a.group(1)), a.group(2) or a.group(3)) if a else (None, "?")
        loopback = addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1")
        if not loopback or port == 53:
            bad.append(line.strip())
    return bad


def home_writes(home: Path, onboard_home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")
                  if p.is_file() and onboard_home not in p.parents)


def run_traced(argv: list[str], log: Path, env: dict) -> subprocess.CompletedProcess:
    cmd = ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(log), *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--require", action="store_true", help="fail when strace is missing")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (strace logs)")
    args = ap.parse_args()
    if not shutil.which("strace"):
        print("strace not found (Debian: apt-get install strace); skipped")
        return 1 if args.require else 0
    work = Path(tempfile.mkdtemp(prefix="onboard-strace-"))
    home, onboard_home, corpus = work / "home", work / "home" / "onboard", work / "corpus"
    corpus.mkdir(parents=True)
    onboard_home.mkdir(parents=True)
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    # A fresh HOME shows writes outside ONBOARD_HOME; no offline variables are set here on
    # purpose: the package must set every switch itself.
    env = {k: v for k, v in os.environ.items() if not re.match(r"(HF_|TRANSFORMERS_|ORT_|ANONYMIZED|DO_NOT)", k)}
    env.update(HOME=str(home), ONBOARD_HOME=str(onboard_home), XDG_CACHE_HOME=str(home / ".cache"))
    onboard = [sys.executable, "-m", "assistant.cli"] if not (ROOT / ".venv/bin/onboard").exists() \
        else [str(ROOT / ".venv/bin/onboard")]
    steps = [("index", [*onboard, "index", str(corpus), "--index", "strace"]),
             ("ask", [*onboard, "ask", "--mode", "rag", "--index", "strace", "--model", args.model,
                      "--max-tokens", "16", "--temperature", "0", "How do I change the port?"])]
    failed = False
    for label, argv in steps:
        log = work / f"{label}.strace"
        proc = run_traced(argv, log, env)
        bad = bad_connects(log.read_text(errors="replace"))
        total = sum(1 for line in log.read_text(errors="replace").splitlines() if "connect(" in line)
        print(f"{label}: exit {proc.returncode}, {total} connect calls, {len(bad)} outside loopback/unix or DNS")
        if proc.returncode != 0:
            print(proc.stderr.strip()[-2000:])
            failed = True
        for line in bad[:20]:
            print("  " + line)
        failed |= bool(bad)
    writes = home_writes(home, onboard_home)
    print(f"files written under HOME outside ONBOARD_HOME: {len(writes)}")
    for path in writes[:20]:
        print("  " + path)
    failed |= bool(writes)
    if args.keep:
        print(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("FAIL" if failed else "OK: no egress")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
