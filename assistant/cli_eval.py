"""`onboard eval` (multiple-choice evaluation) and `onboard build` (docs folder -> evaluated specialist).

    onboard eval --mcq questions.jsonl --model smollm2-135m,my-specialist --modes plain,rag,hybrid --runs 10
    onboard eval --mcq general --model my-specialist --modes plain      # built-in general-skill set
    onboard build ./docs --quick --name my-docs
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

from .cli import add_model_options
from .errors import OnboardError
from .settings import Settings


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def run_eval(settings: Settings, mcq: str, model_names: list[str], modes: list[str], runs: int = 10,
             index: str | None = None, k: int | None = None, generate: bool = False,
             out_dir: Path | None = None, command: str = "", progress: bool = True,
             labels: dict[str, str] | None = None) -> dict:
    """Evaluate models on an MCQ file (or "general"); write results; return meta + summary."""
    from .answer import MODES
    from .evaluate import evaluate, general_mcq_path, read_mcq, summarize
    from .llm import load_settings_model
    from .models import model_label, resolve_model, sha256_file
    from .report import write_eval

    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise OnboardError(f"unknown mode(s) {', '.join(bad) or '(none)'}; choose from: {', '.join(MODES)}")
    if runs < 1:
        raise OnboardError("--runs must be at least 1")
    path = general_mcq_path() if mcq == "general" else Path(mcq)
    items = read_mcq(path)
    retriever = None
    if any(m != "plain" for m in modes):
        from .index import open_retriever

        retriever = open_retriever(settings, index or settings.index)
    labels = labels or {}
    models = {}
    for name in model_names:
        gguf = resolve_model(name, settings)
        models[labels.get(name, model_label(name))] = load_settings_model(gguf, settings)
    total = len(items) * len(models) * len(modes)
    t0 = time.perf_counter()
    out_dir = Path(out_dir) if out_dir else settings.home / "eval" / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.stem}"
    # Rows depend on these settings; the mode and model lists and the number of runs are not among
    # them, so a rerun that adds a mode, a model or runs to an evaluation only scores what is new.
    checkpoint = Checkpoint(out_dir / CHECKPOINT_NAME, {
        "mcq": sha256_file(path), "seed": settings.seed, "k": k or settings.top_k,
        "n_ctx": settings.n_ctx, "index": index or settings.index, "generate": generate},
        models={m: str(resolve_model(n, settings)) for n, m in zip(model_names, models)})
    kw = dict(runs=runs, seed=settings.seed, retriever=retriever, k=k or settings.top_k, generate=generate,
              done=checkpoint.done, on_item=checkpoint.append)
    if progress and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.description}"), transient=True, console=_stderr_console()) as bar:
            task = bar.add_task("", total=total)
            rows = evaluate(items, models, modes, on_step=lambda msg: bar.update(task, advance=1, description=msg),
                            **kw)
    else:  # logs (no terminal): one plain line per item
        done = [0]

        def log(msg: str) -> None:
            done[0] += 1
            print(f"eval {done[0]}/{total} {msg}", file=sys.stderr, flush=True)

        rows = evaluate(items, models, modes, on_step=log if progress else None, **kw)
    summary = summarize(rows)
    meta = {"mcq": str(path), "mcq_name": "general (built-in)" if mcq == "general" else path.name,
            "items": len(items), "runs": runs, "modes": modes, "models": list(models), "k": k or settings.top_k,
            "index": index or settings.index if retriever else None, "n_ctx": settings.n_ctx,
            "seed": settings.seed, "seconds": round(time.perf_counter() - t0, 1), "command": command}
    files = write_eval(out_dir, rows, summary, meta)
    return {"meta": meta, "summary": summary, "files": files}


CHECKPOINT_NAME = "rows.checkpoint.jsonl"


class Checkpoint:
    """Rows of finished items, appended (fsync'ed) as they finish and kept after the evaluation,
    so a rerun with the same --out resumes an interrupted one or extends a finished one (another
    mode, model, or more runs: run r's rows depend only on the settings and r). The first
    line holds the settings the rows are valid for; each row also records its model file, so a
    model label that now names another file is scored again. A file written under other settings
    is moved aside to rows.checkpoint.stale.jsonl (replacing an earlier one), not deleted."""

    MODEL_FILE = "_model_file"

    def __init__(self, path: Path, config: dict, models: dict[str, str]):
        self.path, self.models = path, dict(models)
        header = json.dumps({"config": config}, sort_keys=True)
        groups: dict[tuple, list[dict]] = {}
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            if lines and lines[0] == header:
                for line in lines[1:]:
                    try:
                        row = json.loads(line)
                    except ValueError:  # a line cut by a kill: that run is redone
                        continue
                    groups.setdefault((row["model"], row["mode"], row["id"]), []).append(row)
            elif len(lines) > 1:
                os.replace(path, path.with_name(path.name.replace(".jsonl", ".stale.jsonl")))
        kept = {}  # per item, one row a run (a run's row is valid alone), of still-valid model files
        for key, rows in groups.items():
            by_run = {r["run"]: r for r in reversed(rows)}  # the first row of a run wins
            if key[0] not in self.models or rows[0].get(self.MODEL_FILE) == self.models[key[0]]:
                kept[key] = [by_run[run] for run in sorted(by_run)]
        self.done = {key: [{k: v for k, v in r.items() if k != self.MODEL_FILE} for r in rows]
                     for key, rows in kept.items() if key[0] in self.models}
        from .models import atomic_write_text

        atomic_write_text(path, "".join([header + "\n"] + [json.dumps(r, ensure_ascii=False) + "\n"
                                                         for rows in kept.values() for r in rows]))

    def append(self, rows: list[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps({**r, self.MODEL_FILE: self.models.get(r["model"])}, ensure_ascii=False) + "\n"
                         for r in rows)
            f.flush()
            os.fsync(f.fileno())


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def cmd_eval(args, settings: Settings) -> int:
    from .report import markdown_table

    settings.ensure_home()
    result = run_eval(settings, args.mcq, _split(args.model) or [settings.model.split(",")[0]],
                      _split(args.modes), runs=args.runs, index=args.index, k=args.k, generate=args.generate,
                      out_dir=Path(args.out) if args.out else None,
                      command="onboard " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                      progress=not args.json)
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
    from .build import run_build

    settings.ensure_home()
    card = run_build(settings, Path(args.corpus), recipe=args.recipe, teacher=args.teacher,
                     student=args.student, quick=args.quick, name=args.name, data=args.data,
                     mcq=args.mcq, runs=args.runs, out=Path(args.out) if args.out else None,
                     max_chunks=args.max_chunks, max_steps=args.max_steps, force=args.force,
                     command="onboard " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
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
    p.add_argument("--out", help="output folder (default: $ONBOARD_HOME/eval/<time>-<file>)")
    p.add_argument("--json", action="store_true", help="print meta, summary and file paths as JSON")
    p.add_argument("--chroma-url", help="use a shared Chroma server instead of the embedded index")
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
    p.add_argument("--max-chunks", type=int, help="limit the chunks used for synthesis")
    p.add_argument("--max-steps", type=int, help="limit training steps")
    p.add_argument("--out", help="build folder (default: $ONBOARD_HOME/builds/<name>)")
    p.add_argument("--force", action="store_true", help="redo every stage even if done")
    p.add_argument("--json", action="store_true")
    p.add_argument("--chroma-url", help=argparse_suppress())
    p.add_argument("--threads", type=int, help="CPU threads for llama.cpp")
    p.add_argument("--ctx", type=int, dest="n_ctx", help="context window in tokens for evaluation")
    p.add_argument("--seed", type=int)
    p.set_defaults(func=cmd_build)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS
