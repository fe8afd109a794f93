"""`onboard chat` (the terminal UI) and `onboard feedback export|stats`.

    onboard chat --mode rag --model smollm2-135m --index docs
    onboard feedback stats [--json]
    onboard feedback export --format dpo -o pairs.jsonl      # "-o -" writes to stdout
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from assistant.cli.options import add_json_option, add_model_options, add_verbs
from assistant.errors import OnboardError
from assistant.settings import Settings


def cmd_chat(args, settings: Settings) -> int:
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise OnboardError("onboard chat needs an interactive terminal; for scripts use: onboard ask \"QUESTION\"")
    from assistant.tui.app import run_chat

    return run_chat(settings, mode=args.mode, index=args.index, max_tokens=args.max_tokens,
                    first_run_index=not args.no_first_run_index)


def cmd_feedback_export(args, settings: Settings) -> int:
    from assistant.chat.feedback import FeedbackStore, dpo_pairs, export_dpo

    if args.format != "dpo":
        raise OnboardError(f"unknown export format {args.format!r}; supported: dpo")
    if not settings.feedback_db.exists():
        raise OnboardError(f"no feedback yet ({settings.feedback_db} does not exist): rate answers in onboard chat first")
    store = FeedbackStore(settings.feedback_db)
    if args.output == "-":
        for pair in dpo_pairs(store.rows()):
            print(json.dumps(pair, ensure_ascii=False))
        return 0
    out = Path(args.output) if args.output else settings.home / "exports" / "feedback-dpo.jsonl"
    if out.is_dir():
        raise OnboardError(f"{out} is a folder; give a file name, e.g. -o {out / 'feedback-dpo.jsonl'}")
    n = export_dpo(store, out)
    print(f"wrote {n} preference pairs (prompt, chosen, rejected) to {out}")
    return 0


def cmd_feedback_stats(args, settings: Settings) -> int:
    from assistant.chat.feedback import FeedbackStore, feedback_stats

    if not settings.feedback_db.exists():
        stats = feedback_stats_empty()
    else:
        stats = feedback_stats(FeedbackStore(settings.feedback_db))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    approval = f"{stats['approval'] * 100:.0f}% 👍" if stats["approval"] is not None else "–"
    console.print(f"[b]{stats['total']}[/b] rated answers over {stats['prompts']} questions: "
                  f"{stats['up']} up, {stats['down']} down ({approval}); {stats['corrections']} corrections; "
                  f"{stats['dpo_pairs']} DPO pairs exportable. Store: {settings.feedback_db}")
    if stats["by_model_mode"]:
        table = Table("model · mode", "up", "down", "corrections")
        for key, b in sorted(stats["by_model_mode"].items()):
            table.add_row(key, str(b["up"]), str(b["down"]), str(b["corrections"]))
        console.print(table)
    return 0


def feedback_stats_empty() -> dict:
    return {"total": 0, "up": 0, "down": 0, "corrections": 0, "prompts": 0, "dpo_pairs": 0,
            "approval": None, "by_model_mode": {}, "first": None, "last": None}


def register(sub) -> None:
    p = sub.add_parser("chat", help="the terminal chat (Textual UI): streaming answers, sources, feedback")
    p.add_argument("--mode", help="plain | rag | hybrid (default: settings.mode)")
    p.add_argument("--index", help="docs index name (default: settings.index)")
    p.add_argument("--max-tokens", type=int, help="longest answer in tokens")
    p.add_argument("--no-first-run-index", action="store_true",
                   help="do not build the default docs index when it is missing")
    add_model_options(p)
    p.set_defaults(func=cmd_chat)

    fb = add_verbs(sub, "feedback", "user ratings from onboard chat: stats and DPO export")
    p = fb.add_parser("export", help="write preference pairs (prompt, chosen, rejected) as JSONL")
    p.add_argument("--format", default="dpo", help="dpo (the only format)")
    p.add_argument("-o", "--output", help="output file (default: $ONBOARD_HOME/exports/feedback-dpo.jsonl; - for stdout)")
    p.set_defaults(func=cmd_feedback_export)
    p = fb.add_parser("stats", help="summary of ratings")
    add_json_option(p)
    p.set_defaults(func=cmd_feedback_stats)
