"""Evaluation output: results.jsonl, summary.json, a Markdown table and PNG charts; the report card.

`write_eval(out_dir, rows, summary, meta)` writes what `onboard eval` measured;
`write_report_card(out_dir, card)` writes what `onboard build` shows before a user trusts a
specialist: domain accuracy base vs tuned per mode, general-skill retention, retrieval hit@k,
tokens/s, sizes and the time each stage took. Every file is written atomically.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Sequence

from assistant.files import atomic_write_bytes, atomic_write_text

MODE_ORDER = ("plain", "rag", "hybrid")


def pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def _opt(s: dict, key: str) -> str:
    return pct(s[key]) if s.get(key) is not None else "–"


def markdown_table(summary: Sequence[dict]) -> str:
    """One row per model x mode. `cyclic` (all option rotations averaged) is the headline; a
    free-form evaluation (freeform.py) adds its own columns first."""
    gen = any("generate" in s for s in summary)
    free = any("freeform" in s for s in summary)
    head = ["model", "mode"] + (["free-form %", "none picked / looped"] if free else []) + [
        "cyclic %", "calibrated %", "single order %"] + (["generate %"] if gen else []) + [
        "hit@k %", "in context %", "evidence in context %", "misses: retrieval / model", "most-picked letter", "too long / trimmed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [s["model"], s["mode"]]
        if free:
            cells += [pct(s.get("freeform"), s.get("freeform_std")),
                      f"{s['none_picked']:.1f} / {s['looped']}" if "none_picked" in s else "–"]
        cells += [pct(s.get("cyclic"), s.get("cyclic_std")), pct(s.get("calibrated"), s.get("calibrated_std")),
                  pct(s.get("single"), s.get("single_std"))]
        if gen:
            cells.append(pct(s["generate"], s["generate_std"]) + (f" ({100 * s['unparsed']:.0f}% unparsed)"
                                                                  if s.get("unparsed") else "") if "generate" in s else "–")
        misses = f"{s['miss_retrieval']:.1f} / {s['miss_model']:.1f}" if "miss_model" in s else "–"
        bias = f"{s['top_letter']} {100 * s['top_letter_share']:.0f}%" if "top_letter" in s else "–"
        evidence = _opt(s, "evidence_hit")
        if "right_evidence_in" in s or "right_evidence_out" in s:
            evidence += " (right " + " / ".join(f"{100 * s[k]:.0f}" if k in s else "–"
                                                for k in ("right_evidence_in", "right_evidence_out")) + ")"
        cells += [_opt(s, "hit_at_k"), _opt(s, "context_hit"), evidence, misses, bias, f"{s['too_long']} / {s['truncated']}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _accuracy_axes(ax, summary: Sequence[dict], metric: str = "cyclic", title: str = "") -> None:
    models = list(dict.fromkeys(s["model"] for s in summary))
    modes = [m for m in MODE_ORDER if any(s["mode"] == m for s in summary)] or \
        list(dict.fromkeys(s["mode"] for s in summary))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        xs, ys, es = [], [], []
        for j, mode in enumerate(modes):
            s = next((s for s in summary if s["model"] == model and s["mode"] == mode), None)
            if s is not None:
                xs.append(j + (i - (len(models) - 1) / 2) * width)
                ys.append(100 * s[metric])
                es.append(100 * s.get(f"{metric}_std", 0.0))
        bars = ax.bar(xs, ys, width, yerr=es, capsize=4, label=model)
        ax.bar_label(bars, fmt="%.0f", padding=2, fontsize=8)
    chance = 100 / 4
    ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance (4 options)")
    ax.set_xticks(range(len(modes)), modes)
    ax.set_ylabel("accuracy % (mean ± std over runs)")
    ax.set_ylim(0, 100)
    ax.set_title(title or f"MCQ accuracy ({metric})")
    ax.legend(fontsize=8)


def accuracy_png(summary: Sequence[dict], title: str = "") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    metric = "cyclic" if any("cyclic" in s for s in summary) else "freeform"
    _accuracy_axes(ax, [s for s in summary if metric in s], metric=metric, title=title)
    data = _png(fig)
    plt.close(fig)
    return data


def write_eval(out_dir: Path, rows: Sequence[dict], summary: Sequence[dict], meta: dict) -> dict:
    """results.jsonl (one row per model x mode x run x item), summary.json, results.md, accuracy.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "results.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic_write_text(out_dir / "summary.json", json.dumps({"meta": meta, "summary": list(summary)}, indent=2))
    title = f"{meta.get('mcq_name', 'MCQ')}: {meta.get('items', '?')} items, {meta.get('runs', '?')} runs"
    atomic_write_bytes(out_dir / "accuracy.png", accuracy_png(summary, title))
    md = [f"# Evaluation: {meta.get('mcq_name', '')}", "", f"Command: `{meta.get('command', '')}`", "",
          markdown_table(summary), "", NOTES + (FREEFORM_NOTES if any("freeform" in s for s in summary) else ""),
          "", per_question_table(rows), "", "![accuracy](accuracy.png)", ""]
    atomic_write_text(out_dir / "results.md", "\n".join(md))
    return {"results": str(out_dir / "results.jsonl"), "summary": str(out_dir / "summary.json"),
            "markdown": str(out_dir / "results.md"), "chart": str(out_dir / "accuracy.png")}


NOTES = (
    "*cyclic*: each item scored under every rotation of its options, per-option letter log-probs "
    "averaged (cancels letter-position bias) — the headline number. *calibrated*: single order with "
    "the run's mean letter prior subtracted. *single order*: the shuffled order as shown. "
    "± is the standard deviation over runs (each run shuffles the options with its own seed). "
    "*hit@k*: a retrieved chunk comes from one of the item's source files; *in context*: it survived "
    "the token budget; *evidence in context*: every evidence quote of the item is in the prompt's "
    "documents (the right section, not only the right page); *(right a / b)*: accuracy (cyclic) on "
    "the items whose evidence was / was not in the prompt. *misses*: wrong answers per run (cyclic) with the source not retrieved / "
    "retrieved. *too long*: items whose question and options did not fit the context (counted "
    "wrong, never cut); *trimmed*: items whose retrieved chunks were cut to fit.")


FREEFORM_NOTES = (
    " *free-form*: the model answered the question without its options (greedy, through the same path "
    "as `onboard ask`), then a grader model picked the option the answer supports by letter log-probs "
    "over all rotations of the options, with a last choice \"None of these\" that counts wrong "
    "(assistant/eval/freeform.py); ± over runs = over the option orders the grader saw. *none picked*: "
    "answers graded \"none\" per run; *looped*: answers the loop detector ended. *grader check* rows "
    "grade the reference evidence (should be near 100 %) and another item's evidence (near 0 %).")


def per_question_table(rows: Sequence[dict]) -> str:
    """Which items each model x mode got right (cyclic), over how many runs, and whether the
    source was retrieved: the table that tells retrieval misses from model misses."""
    cols = list(dict.fromkeys((r["model"], r["mode"]) for r in rows))
    ids = list(dict.fromkeys(r["id"] for r in rows))
    cell: dict = {}
    for r in rows:
        c = cell.setdefault((r["id"], r["model"], r["mode"]), [0, 0, r.get("retrieval_hit")])
        c[0] += bool(r.get("correct_cyclic", r.get("correct_freeform")))
        c[1] += 1
    head = ["item"] + [f"{m} · {mode}" for m, mode in cols]
    lines = ["<details><summary>Per-question results (right runs / runs; R = source retrieved, "
             "r = not retrieved)</summary>", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i in ids:
        cells = [i]
        for m, mode in cols:
            right, n, hit = cell.get((i, m, mode), [0, 0, None])
            cells.append(f"{right}/{n}" + ("" if hit is None else (" R" if hit else " r")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", "</details>"])


# --- report card -------------------------------------------------------------------------
def report_card_png(card: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = card.get("stages", {})
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [2.2, 1, 1.2]})
    _accuracy_axes(axes[0], card["domain"], title=f"Domain MCQ accuracy ({card.get('mcq_name', '')})")
    ret = card.get("retention", [])
    if ret:
        _accuracy_axes(axes[1], ret, title="General-skill retention")
    else:
        axes[1].axis("off")
    if stages:
        names = list(stages)
        axes[2].barh(names, [stages[n].get("seconds", 0) / 60 for n in names], color="tab:gray")
        axes[2].invert_yaxis()
        axes[2].set_xlabel("minutes")
        axes[2].set_title("Time per stage")
    else:
        axes[2].axis("off")
    data = _png(fig)
    plt.close(fig)
    return data


def _fmt_mb(n: float | None) -> str:
    return f"{n / 1e6:.0f} MB" if n else "–"


def display_path(path: str) -> str:
    """A path as a card shows it: relative to where the command ran when that is short (a
    published card must not hold this machine's absolute paths), else its last two parts."""
    import os

    if not path:
        return ""
    rel = os.path.relpath(path)
    return rel if not rel.startswith(os.path.join("..", "..", "..")) else str(Path(*Path(path).parts[-2:]))


def report_card_markdown(card: dict) -> str:
    models = card.get("models", {})
    lines = [f"# Report card: {card['name']}", "",
             f"Corpus `{display_path(card.get('corpus', ''))}` · recipe `{card.get('recipe', '')}` · student "
             f"`{card.get('student', '')}` · teacher `{card.get('teacher', '')}` · "
             f"{'quick' if card.get('quick') else 'full'} settings · built {card.get('finished', '')}", "",
             f"Reproduce: `{card.get('command', '')}`", "",
             "## Domain accuracy (base vs tuned, per mode)", "", markdown_table(card["domain"]), ""]
    if card.get("retention"):
        lines += ["## General-skill retention (built-in general set, plain mode)", "",
                  markdown_table(card["retention"]), ""]
    lines += ["## Models", "", "| model | file | size | tokens/s (decode, this machine) | first token ms |",
              "|---|---|---|---|---|"]
    for label, m in models.items():
        lines.append(f"| {label} | `{m.get('gguf', '')}` | {_fmt_mb(m.get('bytes'))} | "
                     f"{m.get('tokens_per_s', 0):.1f} | {m.get('ttft_ms', 0):.0f} |")
    lines += ["", "## Pipeline", "", "| stage | minutes | notes |", "|---|---|---|"]
    for stage, info in card.get("stages", {}).items():
        lines.append(f"| {stage} | {info.get('seconds', 0) / 60:.1f} | {info.get('note', '')} |")
    lines += ["", NOTES, "", "![report card](report_card.png)", ""]
    if card.get("notes"):
        lines[-1:-1] = ["## Notes", "", *card["notes"], ""]
    return "\n".join(lines)


def write_report_card(out_dir: Path, card: dict) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report_card.json", json.dumps(card, indent=2, default=str))
    atomic_write_bytes(out_dir / "report_card.png", report_card_png(card))
    atomic_write_text(out_dir / "report_card.md", report_card_markdown(card))
    return {"markdown": str(out_dir / "report_card.md"), "chart": str(out_dir / "report_card.png"),
            "json": str(out_dir / "report_card.json")}


def publish(out_dir: str | Path, dest_md: str | Path) -> Path:
    """Copy an eval's results.md and chart next to `dest_md` (e.g. docs/results/baseline.md),
    renaming the chart to <stem>.png and fixing the link."""
    out_dir, dest_md = Path(out_dir), Path(dest_md)
    chart = dest_md.with_suffix(".png")
    md = (out_dir / "results.md").read_text(encoding="utf-8").replace("(accuracy.png)", f"({chart.name})")
    atomic_write_bytes(chart, (out_dir / "accuracy.png").read_bytes())
    atomic_write_text(dest_md, md)
    return dest_md
