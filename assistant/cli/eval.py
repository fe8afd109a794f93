"""`onboard eval` (multiple-choice evaluation) and `onboard build` (docs folder -> evaluated specialist).

    onboard eval --mcq questions.jsonl --model smollm2-135m,my-specialist --modes plain,rag,hybrid --runs 10
    onboard eval --mcq general --model my-specialist --modes plain      # built-in general-skill set
    onboard build ./docs --quick --name my-docs
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from assistant.cli.options import add_chroma_option, add_json_option, add_model_options, command_line
from assistant.settings import Settings


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def cmd_eval(args, settings: Settings) -> int:
    from assistant.eval.report import markdown_table
    from assistant.eval.run import run_eval

    settings.ensure_home()
    models = _split(args.model) or [settings.model.split(",")[0]]
    if args.method == "freeform":
        from assistant.eval.freeform import run_freeform

        settings = settings.replace(max_tokens=args.max_tokens, top_k=args.k)
        result = run_freeform(settings, args.mcq, models, _split(args.modes), runs=args.runs, index=args.index,
                              grader=args.grader, checks=args.grader_checks,
                              out_dir=Path(args.out) if args.out else None, command=command_line(),
                              progress=not args.json)
    else:
        result = run_eval(settings, args.mcq, models, _split(args.modes), runs=args.runs, index=args.index,
                          k=args.k, generate=args.generate, out_dir=Path(args.out) if args.out else None,
                          command=command_line(), progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(markdown_table(result["summary"]))
    for s in result["summary"]:
        if s["too_long"] or s["truncated"]:
            print(f"note: {s['model']} · {s['mode']}: {s['too_long']} item(s) too long for the "
                  f"{settings.n_ctx}-token context (counted wrong), {s['truncated']} with retrieved text "
                  f"trimmed to fit (raise --ctx)", file=sys.stderr)
    print(f"\nresults: {result['files']['markdown']}  chart: {result['files']['chart']}")
    return 0


def cmd_build(args, settings: Settings) -> int:
    from assistant.build import BuildConfig, run_build
    from train.budget import parse_budget

    settings.ensure_home()
    asked = BuildConfig(corpus=args.corpus, name=args.name, recipe=args.recipe, student=args.student,
                        teacher=args.teacher, data=args.data, mcq=args.mcq, quick=args.quick,
                        max_chunks=args.max_chunks, max_steps=args.max_steps, runs=args.runs,
                        cloze_per_chunk=args.cloze_per_chunk,
                        **({"modes": tuple(_split(args.modes))} if args.modes else {}),
                        budget=parse_budget(args.budget) if args.budget else None)
    card = run_build(settings, asked, out=Path(args.out) if args.out else None, force=args.force,
                     command=command_line())
    if args.json:
        print(json.dumps(card, indent=2, default=str))
        return 0
    print(f"built {card['name']}: chat with it using  onboard chat --model {card['name']}")
    print(f"report card: {card['files']['markdown']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="multiple-choice evaluation: models x modes, mean ± std over runs")
    p.add_argument("--mcq", required=True,
                   help="questions: .jsonl (question, choices, answer, sources) or .csv "
                        "(question,a,b,c,d,correct); 'general' = the built-in general-skill set")
    p.add_argument("--modes", default="plain,rag,hybrid", help="comma list of plain, rag, hybrid")
    p.add_argument("--runs", type=int, default=10, help="rounds, each with its own option shuffle (default 10)")
    p.add_argument("--index", help="docs index for rag/hybrid (default: settings.index)")
    p.add_argument("--k", type=int, help="chunks to retrieve (default: settings.top_k)")
    p.add_argument("--generate", action="store_true",
                   help="also score by generating an answer and parsing its letter (secondary method)")
    p.add_argument("--method", choices=("mcq", "freeform"), default="mcq",
                   help="mcq: letter log-probs with the options shown (default); freeform: the model answers "
                        "without options, a grader model picks the option the answer supports")
    p.add_argument("--grader", help="freeform: grading model (default: the best installed packaged model)")
    p.add_argument("--grader-checks", action="store_true",
                   help="freeform: also grade the items' reference evidence (~100%% expected) and another "
                        "item's evidence (~0%% expected)")
    p.add_argument("--max-tokens", type=int, help="freeform: answer length cap (default: settings.max_tokens)")
    p.add_argument("--out", help="output folder (default: $ONBOARD_HOME/eval/<time>-<file>)")
    add_json_option(p, "print meta, summary and file paths as JSON")
    add_chroma_option(p)
    add_model_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("build", help="docs folder -> index, data, trained + quantized specialist, report card")
    p.add_argument("corpus", help="folder of documentation (Markdown, text, HTML, OpenAPI ...)")
    p.add_argument("--recipe", default="docs-specialist", help="training recipe name or YAML path")
    p.add_argument("--teacher", help="model that writes the synthetic Q&A (default: qwen2.5-coder-1.5b "
                                      "if installed, else the student)")
    p.add_argument("--student", default="smollm2-135m", help="base model to tune (default: smollm2-135m)")
    p.add_argument("--name", help="name to register the specialist under (default: <corpus>-specialist)")
    p.add_argument("--data", help="use this Q&A CSV (question,answer) instead of synthesizing")
    p.add_argument("--quick", action="store_true", help="small CPU-sized settings (well under an hour on 2 cores)")
    p.add_argument("--mcq", help="domain MCQ file for the report card (default: none -> retention only)")
    p.add_argument("--runs", type=int, help="eval runs (default: 2 with --quick, else 10)")
    p.add_argument("--modes", help="domain eval modes, comma list of plain, rag, hybrid (default: all three)")
    p.add_argument("--max-chunks", type=int, help="limit the chunks used for synthesis")
    p.add_argument("--max-steps", type=int, help="limit training steps")
    p.add_argument("--cloze-per-chunk", type=int, choices=range(0, 21), metavar="N",
                   help="teacher-free cloze reading questions per docs chunk (default 2), as in `onboard data import`")
    p.add_argument("--budget", help="fit the whole build into this time (e.g. 90m, 1.5h): measures this machine "
                                    "after indexing, then sizes data and training steps; the plan is kept in state.json")
    p.add_argument("--out", help="build folder (default: $ONBOARD_HOME/builds/<name>)")
    p.add_argument("--force", action="store_true", help="redo every stage even if done")
    add_json_option(p)
    add_chroma_option(p, help=argparse.SUPPRESS)
    add_model_options(p, model=False, ctx_help="context window in tokens for evaluation")
    p.set_defaults(func=cmd_build)
