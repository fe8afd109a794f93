"""`onboard synth` and `onboard data import`: training data from docs, or from existing Q&A.

    onboard synth ./docs --out data/docs --teacher qwen2.5-coder-1.5b --questions 3
    onboard synth ./docs --out data/docs --teacher http://10.0.0.5:8080/v1 --teacher-model qwen
    onboard data import ../shared/data/nitro_qa_gpt4.csv --out data/gpt4 --corpus ./docs
    onboard data check-overlap data/gpt4 --mcq ../shared/eval/nitro_mcq_public.jsonl
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from assistant.cli.options import add_json_option, add_threads_option, add_verbs


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    from collections import Counter

    from rich.console import Console

    from train.data_filter import summary_table

    console = Console()
    f = summary["filter"]
    console.print(summary_table("Q&A pairs: kept / dropped", f["input"], f["kept"], Counter(f["dropped"])))
    r = f.get("rephrase")
    if r and r["input"]:
        console.print(summary_table("Rephrasings: kept / dropped", r["input"], r["kept"], Counter(r["dropped"])))
    c = summary["counts"]
    console.print(f"sft.jsonl: {c['sft']} rows ({c['sft_closed_book']} closed-book, "
                  f"{c['sft_with_context']} with context) · dpo.jsonl: {c['dpo']} · "
                  f"rephrase.jsonl: {c.get('rephrase', 0)}")
    ts = summary.get("teacher_stats")
    if ts and ts.get("asks"):
        parsed = f"{100 * ts['parse_rate']:.1f}% of JSON replies parsed first time, " if ts.get("parse_rate") is not None else ""
        console.print(f"teacher: {ts['asks']} asks, {parsed}{100 * ts['first_try_rate']:.1f}% usable first time, "
                      f"{ts['skipped']} skipped after retries, {ts['seconds']:.0f} s")
    console.print(f"wrote {summary['out_dir']}/ (card: card.md)")


def cmd_synth(args, settings) -> int:
    from train.synth import synthesize

    settings = settings.replace(chunk_tokens=args.chunk_tokens, chunk_overlap=args.overlap)
    summary = synthesize(
        Path(args.corpus), Path(args.out), teacher=args.teacher, teacher_model=args.teacher_model,
        questions_per_chunk=args.questions, rephrasings=args.rephrasings, distractors=args.distractors,
        p_oracle=args.p_oracle, student=None if args.no_student else args.student,
        max_chunks=args.max_chunks, seed=settings.seed if args.seed is None else args.seed,
        settings=settings, progress=not args.json and sys.stderr.isatty() or args.progress,
        grammar=not args.no_grammar,
    )
    _print_summary(summary, args.json)
    return 0


def cmd_data_import(args, settings) -> int:
    from assistant.errors import OnboardError
    from train.data_import import import_qa

    if args.cloze_per_chunk is not None and not args.corpus:
        raise OnboardError("--cloze-per-chunk needs --corpus DOCS: cloze questions are made from the docs' chunks")

    settings = settings.replace(chunk_tokens=args.chunk_tokens, chunk_overlap=args.overlap)
    summary = import_qa(Path(args.file), Path(args.out), settings=settings,
                        corpus=Path(args.corpus) if args.corpus else None,
                        distractors=args.distractors, p_oracle=args.p_oracle,
                        seed=settings.seed if args.seed is None else args.seed,
                        cloze_per_chunk=args.cloze_per_chunk)
    _print_summary(summary, args.json)
    return 0


def cmd_data_check_overlap(args, settings) -> int:
    from train.overlap import check_overlap, report_lines

    report = check_overlap(Path(args.data_dir), Path(args.mcq), threshold=args.threshold, drop=not args.dry_run)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    print("\n".join(report_lines(report)))
    for c in report["closest"][:5]:
        print(f"  {c['similarity']:.3f}  {c['question'][:70]!r} ~ {c['mcq_id']}: {c['mcq_question'][:60]!r}")
    print(f"report: {Path(args.data_dir) / 'overlap.json'}")
    return 0


def _chunk_options(p) -> None:
    p.add_argument("--chunk-tokens", type=int, help="chunk size in tokens (default 300, as the index)")
    p.add_argument("--overlap", type=int, help="chunk overlap in tokens (default 30)")
    p.add_argument("--distractors", type=int, default=3, help="distractor chunks per with-context example (default 3)")
    p.add_argument("--p-oracle", type=float, default=0.8,
                   help="probability that the right chunk is among the context (RAFT; default 0.8)")
    p.add_argument("--seed", type=int, help="seed for sampling and generation (default: settings.seed)")
    add_json_option(p, "print the summary as JSON")


def register(sub) -> None:
    p = sub.add_parser("synth", help="make training data (Q&A, rephrasings, preference pairs) from docs")
    p.add_argument("corpus", help="docs folder or file")
    p.add_argument("--out", required=True, help="output folder (resumes if it holds an earlier run)")
    p.add_argument("--teacher", default="smollm2-135m",
                   help="teacher: registry name, .gguf path or OpenAI-compatible URL "
                        "(default smollm2-135m; qwen2.5-coder-1.5b recommended)")
    p.add_argument("--teacher-model", help="model name to send to an HTTP teacher")
    p.add_argument("--questions", type=int, default=3, help="Q&A pairs per chunk (default 3)")
    p.add_argument("--rephrasings", type=int, default=1, help="paraphrases per chunk (default 1)")
    p.add_argument("--student", default="smollm2-135m",
                   help="model whose closed-book answers become DPO 'rejected' (default smollm2-135m)")
    p.add_argument("--no-student", action="store_true",
                   help="skip student answers; DPO rejected = answers from other chunks")
    p.add_argument("--max-chunks", type=int, help="use a seeded sample of this many chunks")
    p.add_argument("--no-grammar", action="store_true", help="don't constrain teacher JSON (for comparison)")
    add_threads_option(p)
    p.add_argument("--ctx", type=int, dest="n_ctx", help="teacher context window in tokens")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when not a terminal")
    _chunk_options(p)
    p.set_defaults(func=cmd_synth)

    data = add_verbs(sub, "data", "training data files")
    p = data.add_parser("import", help="import Q&A pairs from a CSV/JSONL into training format")
    p.add_argument("file", help=".csv (question,answer columns) or .jsonl file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--corpus", help="docs the pairs come from: enables grounding and with-context rows")
    p.add_argument("--cloze-per-chunk", type=int, choices=range(0, 21), metavar="N",
                   help="teacher-free cloze reading questions per docs chunk (default 2; needs --corpus)")
    _chunk_options(p)
    p.set_defaults(func=cmd_data_import)

    p = data.add_parser("check-overlap", help="drop training rows whose question nearly repeats an MCQ question")
    p.add_argument("data_dir", help="folder with sft.jsonl / dpo.jsonl (the --out of synth or data import)")
    p.add_argument("--mcq", required=True, help="evaluation questions (.jsonl or .csv, as onboard eval reads)")
    p.add_argument("--threshold", type=float, default=0.9,
                   help="cosine similarity of question embeddings at which a row is dropped (default 0.9)")
    p.add_argument("--dry-run", action="store_true", help="report only; change no file")
    add_json_option(p, "print the report as JSON")
    p.set_defaults(func=cmd_data_check_overlap)
