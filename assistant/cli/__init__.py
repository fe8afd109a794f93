"""`onboard` command line: thin wrappers over pure functions, `onboard <noun> <verb>` style.

    onboard ask "How do I load a model?" --mode rag --json
    onboard models list

Each command family registers itself from its own module (see COMMAND_MODULES; the options
several commands share are declared once in options.py); a handler parses, calls one engine
function (assistant.chat/rag/eval/build, train, quantize) and prints. Heavy imports
(torch, chromadb, llama_cpp) happen inside handlers so `onboard --help` and the TUI start fast.
Errors meant for users (OnboardError) print one line on stderr and exit non-zero.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

import assistant  # noqa: F401  (sets offline environment before anything else loads)
from assistant.cli.options import OnboardParser
from assistant.errors import OnboardError
from assistant.settings import Settings, load_settings

COMMAND_MODULES = [
    "assistant.cli.ask",       # ask, models
    "assistant.cli.docs",      # index, search, corpus, eval-retrieval
    "assistant.cli.chat",      # chat, feedback
    "assistant.cli.synth",     # synth, data
    "assistant.cli.train",     # train
    "assistant.cli.quantize",  # quantize, export, bundle, serve
    "assistant.cli.eval",      # eval, build
]


def settings_from_args(args) -> Settings:
    """Settings with this command's options applied; Settings checks every numeric value (ranges
    in assistant/settings.py LIMITS), so `--ctx -5` or `--max-tokens 0` stop here with one line."""
    s = load_settings()
    return s.replace(
        model=getattr(args, "model", None), n_threads=getattr(args, "threads", None),
        n_ctx=getattr(args, "n_ctx", None), seed=getattr(args, "seed", None),
        chroma_url=getattr(args, "chroma_url", None), max_tokens=getattr(args, "max_tokens", None),
        top_k=getattr(args, "k", None), temperature=getattr(args, "temperature", None),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OnboardParser(prog="onboard", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"onboard {assistant.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OnboardParser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        return int(args.func(args, settings) or 0)
    except OnboardError as e:
        print(f"onboard: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("onboard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # last resort: still one line, with a way to see more
        if os.environ.get("ONBOARD_DEBUG"):
            raise
        print(f"onboard: internal error: {type(e).__name__}: {e} (rerun with ONBOARD_DEBUG=1 for details)",
              file=sys.stderr)
        return 1

