"""The resumable evaluation run behind `onboard eval` and the build's evaluate stage: load the
questions, models and retriever, score through scoring.evaluate with a checkpoint, write the
results (report.py).

    result = run_eval(settings, "questions.jsonl", ["smollm2-135m"], ["plain", "rag"], runs=5)
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from assistant.chat.modes import check_mode
from assistant.errors import OnboardError
from assistant.settings import Settings


def read_run_items(mcq: str, modes: list[str], runs: int):
    """(path, items) of an evaluation's questions ("general" = the built-in set), after the one
    check of its modes and run count that `onboard eval` does for every method."""
    from assistant.eval.mcq import general_mcq_path, read_mcq

    for mode in modes:
        check_mode(mode)
    if runs < 1:
        raise OnboardError("--runs must be at least 1")
    path = general_mcq_path() if mcq == "general" else Path(mcq)
    return path, read_mcq(path)


def run_eval(settings: Settings, mcq: str, model_names: list[str], modes: list[str], runs: int = 10,
             index: str | None = None, k: int | None = None, generate: bool = False,
             out_dir: Path | None = None, command: str = "", progress: bool = True,
             labels: dict[str, str] | None = None) -> dict:
    """Evaluate models on an MCQ file (or "general"); write results; return meta + summary."""
    from assistant.eval.report import write_eval
    from assistant.eval.scoring import summarize
    from assistant.files import sha256_file
    from assistant.llm.registry import resolve_model

    if not modes:
        raise OnboardError("no mode given; choose from: plain, rag, hybrid")
    path, items = read_run_items(mcq, modes, runs)
    retriever = None
    if any(m != "plain" for m in modes):
        from assistant.rag.index import open_retriever

        retriever = open_retriever(settings, index or settings.index)
    models = _load_models(settings, model_names, labels or {})
    t0 = time.perf_counter()
    out_dir = Path(out_dir) if out_dir else settings.home / "eval" / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.stem}"
    # Rows depend on these settings; the mode and model lists and the number of runs are not among
    # them, so a rerun that adds a mode, a model or runs to an evaluation only scores what is new.
    checkpoint = Checkpoint(out_dir / CHECKPOINT_NAME, {
        "mcq": sha256_file(path), "seed": settings.seed, "k": k or settings.top_k,
        "n_ctx": settings.n_ctx, "index": index or settings.index, "generate": generate,
        # only when on, so checkpoints written before this setting existed stay valid
        **({"whole_files_tokens": settings.whole_files_tokens} if settings.whole_files_tokens else {})},
        models={m: str(resolve_model(n, settings)) for n, m in zip(model_names, models)})
    rows = _evaluate_with_progress(items, models, modes, progress, runs=runs, seed=settings.seed,
                                   retriever=retriever, k=k or settings.top_k, generate=generate,
                                   whole_files_tokens=settings.whole_files_tokens,
                                   done=checkpoint.done, on_item=checkpoint.append)
    summary = summarize(rows)
    meta = {"mcq": str(path), "mcq_name": "general (built-in)" if mcq == "general" else path.name,
            "items": len(items), "runs": runs, "modes": modes, "models": list(models), "k": k or settings.top_k,
            "index": index or settings.index if retriever else None, "n_ctx": settings.n_ctx,
            "seed": settings.seed, "seconds": round(time.perf_counter() - t0, 1), "command": command,
            "whole_files_tokens": settings.whole_files_tokens}
    files = write_eval(out_dir, rows, summary, meta)
    return {"meta": meta, "summary": summary, "files": files}


def _load_models(settings: Settings, model_names: list[str], labels: dict[str, str]) -> dict:
    """label -> loaded model, in the order given."""
    from assistant.llm.chat_model import load_eval_model
    from assistant.llm.registry import model_label, resolve_model

    return {labels.get(name, model_label(name)): load_eval_model(resolve_model(name, settings), settings)
            for name in model_names}


def _evaluate_with_progress(items, models: dict, modes: list[str], progress: bool, **kw) -> list[dict]:
    """scoring.evaluate with a progress bar on a terminal, one plain line per item in logs."""
    from assistant.eval.scoring import evaluate

    total = len(items) * len(models) * len(modes)
    if progress and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.description}"), transient=True, console=_stderr_console()) as bar:
            task = bar.add_task("", total=total)
            return evaluate(items, models, modes, on_step=lambda msg: bar.update(task, advance=1, description=msg),
                            **kw)
    done = [0]

    def log(msg: str) -> None:
        done[0] += 1
        print(f"eval {done[0]}/{total} {msg}", file=sys.stderr, flush=True)

    return evaluate(items, models, modes, on_step=log if progress else None, **kw)


CHECKPOINT_NAME = "rows.checkpoint.jsonl"


class Checkpoint:
    """Rows of finished items, appended (fsync'ed) as they finish and kept after the evaluation,
    so a rerun with the same --out resumes an interrupted one or extends a finished one (another
    mode, model, or more runs: run r's rows depend only on the settings and r). The first
    line holds the settings the rows are valid for; each row also records its model file with
    its size and modification time, so a model label that now names another file, or a file
    rebuilt in place, is scored again. A file written under other settings
    is moved aside to rows.checkpoint.stale.jsonl (replacing an earlier one), not deleted."""

    MODEL_FILE = "_model_file"

    def __init__(self, path: Path, config: dict, models: dict[str, str]):
        from assistant.files import file_version

        self.path = path
        self.models = {label: f"{file}@{file_version(file)}" for label, file in models.items()}
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
        from assistant.files import atomic_write_text

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
