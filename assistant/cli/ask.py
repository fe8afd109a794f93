"""`onboard ask` (one question, streamed) and `onboard models list|path`.

    onboard ask "How do I load a model?" --mode rag --json
    onboard ask "and how do I unload it?" --mode rag --turn "How do I load a model?" "POST to /loadmodel"
    onboard models list
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from assistant.cli.options import add_chroma_option, add_json_option, add_model_options, add_verbs
from assistant.settings import Settings


def cmd_ask(args, settings: Settings) -> int:
    from assistant.chat.session import Session

    from assistant.chat.history import read_history_file

    history = read_history_file(args.history) if args.history else []
    history += [tuple(t) for t in args.turn or []]
    job = Session(settings, index=args.index).job(
        " ".join(args.question), mode=args.mode, k=args.k, max_tokens=args.max_tokens,
        temperature=args.temperature, history=history)
    if args.json:
        print(json.dumps(job.run().to_dict(), ensure_ascii=False))
        return 0
    for piece in job.stream():
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if job.result.looped:
        print("[stopped: the answer began repeating itself]", file=sys.stderr)
    if job.result.sources:
        if job.result.query != job.result.question:  # a follow-up, searched as its standalone rewrite
            print(f"\nSearched: {job.result.query}")
        print("\nSources:")
        for i, h in enumerate(job.result.sources, 1):
            print(f"  [{i}] {h.ref}  (score {h.score:.3f})")
    t = job.result.timings
    print(f"\n[{job.result.model} · {args.mode} · {t.get('tokens_per_s', 0):.1f} tok/s · "
          f"first token {t.get('ttft_ms', 0):.0f} ms]", file=sys.stderr)
    return 0


# --- models ------------------------------------------------------------------------------
def cmd_models_list(args, settings: Settings) -> int:
    from assistant.llm.registry import list_models

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
        table.add_row(r.name + (" (default)" if r.default else ""), r.source, f"{r.size_mb} MB", r.arch, r.params,
                      r.quant, r.license, "yes" if r.installed else "no", where)
    console = Console()
    Console(width=max(160, console.width) if not console.is_terminal else None).print(table)
    return 0


def cmd_models_path(args, settings: Settings) -> int:
    from assistant.llm.registry import resolve_model

    print(resolve_model(args.name, settings))
    return 0


def register(sub) -> None:
    p = sub.add_parser("ask", help="answer one question (streams to stdout)")
    p.add_argument("question", nargs="*", help="the question")
    p.add_argument("--mode", default="plain", help="plain | rag | hybrid (default: plain)")
    p.add_argument("--index", help="docs index name for rag/hybrid (default: settings.index)")
    add_chroma_option(p)
    p.add_argument("--k", type=int, help="chunks to retrieve (default: settings.top_k)")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--history", metavar="FILE.json",
                   help="earlier turns: [[question, answer], ...], chat messages, or a saved chat conversation")
    p.add_argument("--turn", nargs=2, action="append", metavar=("QUESTION", "ANSWER"),
                   help="an earlier turn (repeatable, oldest first; after --history's)")
    add_json_option(p, "print one JSON object instead of streaming")
    add_model_options(p)
    p.set_defaults(func=cmd_ask)

    models = add_verbs(sub, "models", "list and locate models")
    p = models.add_parser("list", help="named models: packaged, optional and built")
    add_json_option(p)
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("path", help="print the GGUF path of a model (assembling it if needed)")
    p.add_argument("name")
    p.set_defaults(func=cmd_models_path)
