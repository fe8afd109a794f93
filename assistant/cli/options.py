"""The parser class and the options several commands share, each declared once here."""
from __future__ import annotations

import argparse
import shlex
import sys


class OnboardParser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        self.exit(2, f"onboard: error: {message} (see: {self.prog} --help)\n")


def add_verbs(sub, noun: str, help: str):
    """`onboard NOUN VERB`: the sub-command NOUN, returning the parser group its verbs go into."""
    return sub.add_parser(noun, help=help).add_subparsers(dest="verb", required=True, parser_class=OnboardParser)


def add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, help="CPU threads for llama.cpp")


def add_model_options(p: argparse.ArgumentParser, model: bool = True, ctx_help: str = "context window in tokens"
                      ) -> None:
    """--model, --threads, --ctx and --seed: how a command loads its model."""
    if model:
        p.add_argument("--model", help="registry name or .gguf path (default: settings.model)")
    add_threads_option(p)
    p.add_argument("--ctx", type=int, dest="n_ctx", help=ctx_help)
    p.add_argument("--seed", type=int, help="seed for sampling and option shuffles (default: settings.seed)")


def add_chroma_option(p: argparse.ArgumentParser, help: str = "use a shared Chroma server instead of the "
                      "embedded index, e.g. http://host:8000") -> None:
    p.add_argument("--chroma-url", help=help)


def add_json_option(p: argparse.ArgumentParser, help: str = "print the result as JSON") -> None:
    p.add_argument("--json", action="store_true", help=help)


def command_line() -> str:
    """This process's command as a user would retype it (recorded in results and cards)."""
    return "onboard " + " ".join(shlex.quote(a) for a in sys.argv[1:])
