"""`onboard` command line: thin wrappers over pure functions, `onboard <noun> <verb>` style.

    onboard ask "How do I load a model?" --mode rag --json
    onboard models list

Each command family registers itself from its own module (see COMMAND_MODULES); heavy imports
(torch, chromadb, llama_cpp) happen inside handlers so `onboard --help` and the TUI start fast.
Errors meant for users (OnboardError) print one line on stderr and exit non-zero.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

import assistant  # noqa: F401  (sets offline environment before anything else loads)

from .errors import OnboardError
from .settings import Settings, load_settings

COMMAND_MODULES = [
    "assistant.cli_docs",   # index, search, corpus, eval-retrieval
    "assistant.cli_chat",   # chat, feedback
    "train.cli_synth",      # synth, data
    "train.cli_train",      # train
    "quantize.cli",         # quantize, export, bundle, serve
    "assistant.cli_eval",   # eval, build
]


class OnboardParser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        self.exit(2, f"onboard: error: {message} (see: {self.prog} --help)\n")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registry name or .gguf path (default: settings.model)")
    p.add_argument("--threads", type=int, help="CPU threads for llama.cpp")
    p.add_argument("--ctx", type=int, dest="n_ctx", help="context window in tokens")
    p.add_argument("--seed", type=int)


def settings_from_args(args) -> Settings:
    s = load_settings()
    return s.replace(
        model=getattr(args, "model", None), n_threads=getattr(args, "threads", None),
        n_ctx=getattr(args, "n_ctx", None), seed=getattr(args, "seed", None),
        chroma_url=getattr(args, "chroma_url", None),
    )


def open_model(settings: Settings, name: str | None = None):
    from .llm import load_settings_model
    from .models import resolve_model

    path = resolve_model(name or settings.model, settings)
    return load_settings_model(path, settings)


# --- ask ---------------------------------------------------------------------------------
def cmd_ask(args, settings: Settings) -> int:
    from .answer import AnswerJob
    from .models import model_label

    from .answer import MODES

    if args.mode not in MODES:
        raise OnboardError(f"unknown mode {args.mode!r}; choose one of: {', '.join(MODES)}")
    question = " ".join(args.question).strip()
    if not question:
        raise OnboardError('empty question: ask something, e.g. onboard ask "How do I install it?"')
    retriever = None
    if args.mode != "plain":
        from .index import open_retriever

        retriever = open_retriever(settings, args.index or settings.index)
    model = open_model(settings)
    job = AnswerJob(question, model, mode=args.mode, retriever=retriever, k=args.k,
                    max_tokens=args.max_tokens or settings.max_tokens,
                    temperature=settings.temperature if args.temperature is None else args.temperature,
                    model_name=model_label(settings.model))
    if args.json:
        print(json.dumps(job.run().to_dict(), ensure_ascii=False))
        return 0
    for piece in job.stream():
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if job.result.sources:
        print("\nSources:")
        for i, h in enumerate(job.result.sources, 1):
            print(f"  [{i}] {h.ref}  (score {h.score:.3f})")
    t = job.result.timings
    print(f"\n[{job.result.model} · {args.mode} · {t.get('tokens_per_s', 0):.1f} tok/s · "
          f"first token {t.get('ttft_ms', 0):.0f} ms]", file=sys.stderr)
    return 0


# --- models ------------------------------------------------------------------------------
def cmd_models_list(args, settings: Settings) -> int:
    from .models import list_models

    rows = list_models(settings)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Models (ONBOARD_HOME={settings.home})")
    for col in ("name", "source", "size", "arch", "params", "quant", "license", "installed", "where / how to install"):
        table.add_column(col, overflow="fold")
    home = str(Path.home())
    for r in rows:
        where = r.location.replace(home, "~", 1) if r.installed else r.install
        table.add_row(r.name, r.source, f"{r.size_mb} MB", r.arch, r.params, r.quant, r.license,
                      "yes" if r.installed else "no", where)
    console = Console()
    Console(width=max(160, console.width) if not console.is_terminal else None).print(table)
    return 0


def cmd_models_path(args, settings: Settings) -> int:
    from .models import resolve_model

    print(resolve_model(args.name, settings))
    return 0


def _register_core(sub) -> None:
    p = sub.add_parser("ask", help="answer one question (streams to stdout)")
    p.add_argument("question", nargs="*", help="the question")
    p.add_argument("--mode", default="plain", help="plain | rag | hybrid (default: plain)")
    p.add_argument("--index", help="docs index name for rag/hybrid (default: settings.index)")
    p.add_argument("--chroma-url", help="use a shared Chroma server instead of the embedded index")
    p.add_argument("--k", type=int, default=4, help="chunks to retrieve")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    add_model_options(p)
    p.set_defaults(func=cmd_ask)

    models = sub.add_parser("models", help="list and locate models").add_subparsers(
        dest="verb", required=True, parser_class=OnboardParser)
    p = models.add_parser("list", help="named models: packaged, optional and built")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("path", help="print the GGUF path of a model (assembling it if needed)")
    p.add_argument("name")
    p.set_defaults(func=cmd_models_path)


def build_parser() -> argparse.ArgumentParser:
    parser = OnboardParser(prog="onboard", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"onboard {assistant.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OnboardParser)
    _register_core(sub)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # that command family is not part of this install
            raise
        module.register(sub)
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


if __name__ == "__main__":
    sys.exit(main())
