"""`onboard build`: a docs folder -> an evaluated, registered specialist, in one resumable command.

    onboard build ./docs --quick --mcq questions.jsonl        # CPU: small settings, well under an hour
    onboard build ./docs --data qa.csv --name my-docs          # train on existing Q&A instead of synthesizing

Stages, each recorded in <build dir>/state.json when it finishes (with the time it took and a key
over its settings and the keys of the stages before it):
    index     Chroma index of the corpus, named after the specialist (used by rag/hybrid);
    data      synthetic Q&A from a local teacher (train.synth) or an imported CSV (train.data_import);
    train     the recipe's stages (train.run: merge / DPO / LoRA SFT);
    quantize  HF -> GGUF f16 -> Q8_0 / Q4_K_M, verified; the smallest verified file is registered
              under NAME, so `onboard chat --model NAME` uses it;
    evaluate  base vs tuned, plain / rag / hybrid on the domain MCQ (--mcq), general-skill
              retention on the built-in general set, decode tokens/s;
    report    report_card.md + report_card.png + report_card.json.
A rerun skips every finished stage whose key is unchanged; the data, train and quantize stages
also resume inside themselves (per chunk, per checkpoint, per file), so a killed build loses
at most the step it was in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from assistant.errors import OnboardError
from assistant.files import atomic_write_text
from assistant.settings import Settings

STAGES = ("index", "data", "train", "quantize", "evaluate", "report")
GENERIC_DIRS = {"docs", "doc", "documentation", "content", "src", "source"}
FULL_TEACHER = "qwen2.5-coder-1.5b"


@dataclass
class BuildConfig:
    """What `onboard build` is asked for. Fields left None are filled by make_config (name from
    the corpus folder, teacher from what is installed, sizes from --quick)."""

    corpus: str
    name: str | None = None
    recipe: str = "docs-specialist"
    student: str = "smollm2-135m"
    teacher: str | None = None
    data: str | None = None  # existing Q&A CSV/JSONL instead of synthesis
    mcq: str | None = None
    quick: bool = False
    max_chunks: int | None = None
    questions_per_chunk: int = 3
    cloze_per_chunk: int | None = None  # reading rows' cloze items per chunk (None: train.mcq_rows' default)
    max_steps: int | None = None
    runs: int | None = None
    k: int = 4
    modes: tuple = ("plain", "rag", "hybrid")
    quant_types: tuple = ("f16", "q8_0", "q4_k_m")
    seed: int = 0
    budget: float | None = None  # seconds: a `plan` stage sizes max_chunks / max_steps to fit (train.budget)

    def key(self, fields: tuple[str, ...], upstream: str = "") -> str:
        d = asdict(self)
        payload = json.dumps({f: d[f] for f in fields} | {"upstream": upstream}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# What each stage depends on (besides the stage before it).
STAGE_FIELDS = {
    "index": ("corpus", "name"),
    "data": ("corpus", "teacher", "student", "data", "max_chunks", "questions_per_chunk", "cloze_per_chunk", "seed"),
    "train": ("recipe", "student", "max_steps", "quick", "seed"),
    "quantize": ("name", "quant_types"),
    "evaluate": ("mcq", "runs", "k", "modes", "student", "seed"),
    "report": (),
    "plan": ("budget", "student", "teacher", "data", "recipe", "mcq", "runs", "k", "modes", "quant_types",
             "questions_per_chunk"),
}


def default_name(corpus: Path) -> str:
    """./x/nitro/docs -> nitro-specialist (a folder called docs says nothing)."""
    parts = [p for p in corpus.resolve().parts[::-1] if p.lower() not in GENERIC_DIRS and p != "/"]
    stem = (parts[0] if parts else "docs").lower()
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip("-.") + "-specialist"


def make_config(settings: Settings, asked: BuildConfig) -> BuildConfig:
    """`asked` checked and completed: paths resolved, defaults filled (see BuildConfig)."""
    corpus = Path(asked.corpus).expanduser()
    if not corpus.is_dir():
        raise OnboardError(f"{corpus} is not a folder: pass the docs folder to build from, e.g. onboard build ./docs")
    if asked.data and not Path(asked.data).is_file():
        raise OnboardError(f"--data {asked.data}: file not found")
    mcq = asked.mcq
    if mcq and mcq != "general" and not Path(mcq).is_file():
        raise OnboardError(f"--mcq {mcq}: file not found")
    from assistant.chat.modes import check_mode

    if not asked.modes:
        raise OnboardError("--modes: give at least one of plain, rag, hybrid")
    for mode in asked.modes:
        check_mode(mode)
    student = asked.student or "smollm2-135m"
    teacher = asked.teacher
    if teacher is None:  # the 1.5B teacher writes far better JSON, but costs ~4x the CPU time
        teacher = student if asked.quick else _installed_or(FULL_TEACHER, student, settings)
    cfg = dataclasses.replace(
        asked, corpus=str(corpus.resolve()), name=asked.name or default_name(corpus), student=student,
        teacher=teacher, data=str(Path(asked.data).resolve()) if asked.data else None,
        mcq=str(Path(mcq).resolve()) if mcq and mcq != "general" else mcq, seed=settings.seed, runs=10)
    if asked.quick:  # sized for 2 CPU cores: ~30 chunks of data, a few dozen steps, 2 eval runs, 2 chunks
        cfg.max_chunks, cfg.max_steps, cfg.runs, cfg.k = 30, 24, 2, 2
        cfg.quant_types = ("f16", "q8_0")
    cfg.max_chunks = asked.max_chunks or cfg.max_chunks
    cfg.max_steps = asked.max_steps or cfg.max_steps
    cfg.runs = asked.runs or cfg.runs
    return cfg


def _installed_or(name: str, fallback: str, settings: Settings) -> str:
    from assistant.llm.registry import resolve_model

    try:
        resolve_model(name, settings)
        return name
    except OnboardError:
        return fallback


class Build:
    """Runs the stages in order, persisting state after each; see the module docstring."""

    def __init__(self, settings: Settings, cfg: BuildConfig, build_dir: Path, command: str = "",
                 progress: bool = True, say: Callable[[str], None] | None = None):
        self.settings, self.cfg, self.dir, self.command = settings, cfg, Path(build_dir), command
        self.progress = progress
        self.say = say or (lambda msg: None)
        self.state_path = self.dir / "state.json"
        self.asked_max_steps = cfg.max_steps  # before a plan lowers it
        self.state = self._load_state()

    def _load_state(self) -> dict:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"stages": {}}
        except (OSError, ValueError):
            raise OnboardError(f"{self.state_path} is unreadable; delete it (or use --force) to rebuild") from None
        return state if isinstance(state.get("stages"), dict) else {"stages": {}}

    def _save_state(self) -> None:
        self.state["config"] = asdict(self.cfg)
        atomic_write_text(self.state_path, json.dumps(self.state, indent=2, default=str))

    def run(self, force: bool = False, stages: dict[str, Callable[[], dict]] | None = None) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        order = STAGES[:1] + ("plan",) + STAGES[1:] if self.cfg.budget else STAGES
        funcs = stages or {s: getattr(self, f"stage_{s}") for s in order}
        upstream = ""
        for stage, fn in funcs.items():
            key = self.cfg.key(STAGE_FIELDS.get(stage, ()), upstream)
            done = self.state["stages"].get(stage, {})
            if not force and done.get("status") == "done" and done.get("key") == key:
                self.say(f"✓ {stage}: done earlier ({done.get('seconds', 0):.0f}s), settings unchanged - skipped")
                if stage == "plan":  # a resumed build keeps the stored plan instead of re-measuring
                    self._apply_plan(done.get("result", {}))
                if stage == "data" and done.get("result", {}).get("fit"):  # ... and its refit
                    self._apply_fit(done["result"]["fit"])
            else:
                planned = self.state["stages"].get("plan", {}).get("result", {}).get("stage_s", {}).get(stage)
                if stage == "train":
                    fit = self.result("data").get("fit") or {}
                    planned = fit.get("time_limit_s", fit["train_s"]) + fit.get("later_stages_s", 0.0) if fit else planned
                eta = time.strftime("%H:%M", time.localtime(time.time() + planned)) if planned else ""
                self.say(f"▶ {stage}" + (f" (planned {planned / 60:.1f} min, ETA {eta})" if planned else ""))
                t0 = time.perf_counter()
                self.state["stages"][stage] = {"status": "running", "key": key}
                self._save_state()
                result = fn() or {}
                seconds = round(time.perf_counter() - t0, 1)
                self.state["stages"][stage] = {"status": "done", "key": key, "seconds": seconds, "result": result}
                self._save_state()
                self.say(f"✓ {stage} in {seconds:.0f}s")
            upstream = key
        return self.state

    def result(self, stage: str) -> dict:
        return self.state["stages"].get(stage, {}).get("result", {})

    def _apply_plan(self, plan: dict) -> None:
        """The plan's sizes, never above what was asked explicitly (--max-chunks / --max-steps)."""
        for field in ("max_chunks", "max_steps"):
            if plan.get(field) is not None:
                asked = getattr(self.cfg, field)
                setattr(self.cfg, field, min(asked, plan[field]) if asked else plan[field])

    def _apply_fit(self, fit: dict) -> None:
        """The data stage's refit of the step cap (train.budget.fit_after_data), below --max-steps."""
        asked, most = self.asked_max_steps, fit.get("most_steps", fit["max_steps"])  # a time fit may train up to most
        self.cfg.max_steps = min(asked, most) if asked else most

    # --- stages ----------------------------------------------------------------------------
    def stage_plan(self) -> dict:
        from train.measure import plan_for_build

        plan = plan_for_build(self.settings, self.cfg, self.dir, self.result("index"),
                              self.state["stages"].get("index", {}).get("seconds", 0.0), say=self.say)
        for line in plan.lines():
            self.say("plan: " + line)
        self._apply_plan(plan.to_dict())
        return plan.to_dict()

    def stage_index(self) -> dict:
        from assistant.rag.index import index_path

        return index_path(self.settings, Path(self.cfg.corpus), name=self.cfg.name, progress=self.progress).to_dict()

    def stage_data(self) -> dict:
        started = time.perf_counter()
        out = self.dir / "data"
        if self.cfg.data:
            from train.data_import import import_qa

            summary = import_qa(Path(self.cfg.data), out, settings=self.settings, corpus=Path(self.cfg.corpus),
                                seed=self.cfg.seed, cloze_per_chunk=self.cfg.cloze_per_chunk)
        else:
            from train.synth import synthesize

            summary = synthesize(Path(self.cfg.corpus), out, teacher=self.cfg.teacher, student=self.cfg.student,
                                 questions_per_chunk=self.cfg.questions_per_chunk, max_chunks=self.cfg.max_chunks,
                                 seed=self.cfg.seed, cloze_per_chunk=self.cfg.cloze_per_chunk, settings=self.settings,
                                 progress=self.progress)
        overlap = None
        if self.cfg.mcq and self.cfg.mcq != "general":  # never train on the evaluation's questions
            from train.overlap import check_overlap

            rep = check_overlap(out, Path(self.cfg.mcq))
            overlap = {k: rep[k] for k in ("threshold", "questions", "overlapping_questions", "rows_dropped")}
            self.say(f"overlap with {Path(self.cfg.mcq).name}: {rep['rows_dropped']} training row(s) dropped "
                     f"({rep['overlapping_questions']} question(s) at cosine >= {rep['threshold']})")
        fit = None
        if self.cfg.budget and self.result("plan"):
            # the real rows and the time left refit the plan's step cap (more epochs where they fit)
            from train.budget import fit_after_data

            spent = sum(self.state["stages"].get(s, {}).get("seconds", 0.0) for s in ("index", "plan"))
            fit = fit_after_data(self.settings, self.cfg, out, spent + time.perf_counter() - started,
                                 self.result("plan"))
            if fit:
                self._apply_fit(fit)
                self.say(f"fit: {fit['max_steps']} training steps, {fit['epochs']} epochs of {fit['epoch_steps']} "
                         f"(~{fit['train_s'] / 60:.1f} min)" + (f", then ~{fit['later_stages_s'] / 60:.1f} min of "
                         "later stages" if fit.get("later_stages_s") else "") + ", fit the time left; "
                         f"the real step times set the count (up to {fit['most_steps']}) to end within "
                         f"{fit['time_limit_s'] / 60:.1f} min")
        return {"dir": str(out), "counts": summary.get("counts", {}), "overlap": overlap, "fit": fit,
                "teacher": summary.get("teacher", {"name": "imported " + Path(self.cfg.data or "").name})}

    def stage_train(self) -> dict:
        from train.recipe import load_recipe
        from train.run import run_recipe

        recipe, notes = load_recipe(self.cfg.recipe), []
        data_dir = self.dir / "data"
        # imported Q&A gives preference pairs only when it has plausible wrong answers, and prose
        # rows (a later sft stage's) only for pairs with an answering chunk: such stages are skipped
        missing = [s for i, s in enumerate(recipe.stages) if (s.type == "dpo" or (i and s.type == "sft"))
                   and not all((data_dir / d).is_file() for d in s.data)]
        if missing and len(missing) < len(recipe.stages):
            recipe = dataclasses.replace(recipe, stages=[s for s in recipe.stages if s not in missing])
            what = "preference pairs" if all(s.type == "dpo" for s in missing) else "rows"
            notes.append(f"no {what} in the data for stage(s) {', '.join(s.name for s in missing)}: skipped")
            self.say(notes[-1])
        fit = self.result("data").get("fit") or {}
        time_fit = {"limit_s": fit["time_limit_s"], "planned_steps": fit["max_steps"]} if "time_limit_s" in fit else None
        final = run_recipe(recipe, self.dir / "train", data_dir=data_dir, base=self.cfg.student,
                           max_steps=self.cfg.max_steps, settings=self.settings, progress=self.progress,
                           time_fit=time_fit)
        run = json.loads((self.dir / "train" / "run.json").read_text(encoding="utf-8"))
        return {"final_model": str(final), "stages": run.get("stages", []), "notes": notes}

    def stage_quantize(self) -> dict:
        from quantize.convert import quantize_model

        report = quantize_model(Path(self.result("train")["final_model"]), out_dir=self.dir / "quantize",
                                types=self.cfg.quant_types, name=self.cfg.name, settings=self.settings,
                                card={"recipe": self.cfg.recipe, "corpus": self.cfg.corpus, "build": str(self.dir)},
                                progress=self.say)
        return {t: {k: v for k, v in r.items() if k != "tensor_types"} for t, r in report.items()}

    def stage_evaluate(self) -> dict:
        from assistant.eval.run import run_eval
        from assistant.eval.scoring import measure_speed
        from assistant.llm.chat_model import load_settings_model
        from assistant.llm.registry import resolve_model

        names = [self.cfg.student, self.cfg.name]
        labels = {self.cfg.student: f"base {self.cfg.student}", self.cfg.name: f"tuned {self.cfg.name}"}
        out: dict = {"models": {}}
        if self.cfg.mcq:
            res = run_eval(self.settings, self.cfg.mcq, names, list(self.cfg.modes), runs=self.cfg.runs,
                           index=self.cfg.name, k=self.cfg.k, out_dir=self.dir / "eval" / "domain",
                           progress=self.progress, labels=labels, command=self.command)
            out["domain"], out["mcq_name"] = res["summary"], res["meta"]["mcq_name"]
        res = run_eval(self.settings, "general", names, ["plain"], runs=self.cfg.runs,
                       out_dir=self.dir / "eval" / "general", progress=self.progress, labels=labels)
        out["retention"] = res["summary"]
        for name in names:
            gguf = resolve_model(name, self.settings)
            model = load_settings_model(gguf, self.settings)
            out["models"][labels[name]] = {"gguf": gguf.name, "bytes": gguf.stat().st_size, **measure_speed(model)}
        return out

    def stage_report(self) -> dict:
        from assistant.eval.report import write_report_card

        ev = self.result("evaluate")
        card = {
            "name": self.cfg.name, "corpus": self.cfg.corpus, "recipe": self.cfg.recipe,
            "student": self.cfg.student, "teacher": self.result("data").get("teacher", {}).get("name", self.cfg.teacher),
            "quick": self.cfg.quick, "command": self.command,
            "finished": time.strftime("%Y-%m-%d %H:%M"), "mcq_name": ev.get("mcq_name", ""),
            "domain": ev.get("domain", []), "retention": ev.get("retention", []), "models": ev.get("models", {}),
            "data_counts": self.result("data").get("counts", {}),
            "stages": {s: {"seconds": v.get("seconds", 0), "note": _stage_note(s, v.get("result", {}))}
                       for s, v in self.state["stages"].items() if s != "report"},
            "notes": self.result("train").get("notes", []) + (
                [] if ev.get("domain") else ["No domain MCQ given (--mcq): only retention was measured."]),
        }
        return write_report_card(self.dir / "report", card)


def _stage_note(stage: str, result: dict) -> str:
    if stage == "index":
        return f"{result.get('files', '?')} files, {result.get('chunks', '?')} chunks"
    if stage == "data":
        c = result.get("counts", {})
        return ", ".join(f"{k} {v}" for k, v in c.items() if isinstance(v, int))[:120]
    if stage == "train":
        def brief(s: dict) -> str:
            m = s.get("metrics", {})
            fit = (m.get("time_fit") or {}).get("epochs")
            return f"{s['stage']} ({s['type']}" + (f", {m['steps']} steps" if m.get("steps") else "") + (
                f", {fit} epochs by the time fit" if fit else "") + ")"
        return "; ".join(brief(s) for s in result.get("stages", []))
    if stage == "quantize":
        return ", ".join(f"{t} {r.get('size_mb', '?')} MB" + (" (registered)" if r.get("registered") else "")
                         for t, r in result.items())
    return ""


def run_build(settings: Settings, asked: BuildConfig, out: Path | None = None, force: bool = False,
              command: str = "", progress: bool = True) -> dict:
    """Build (or resume) a specialist; returns the report card plus its file paths."""
    import sys

    cfg = make_config(settings, asked)
    build_dir = Path(out) if out else settings.home / "builds" / cfg.name
    say = (lambda msg: print(f"onboard build: {msg}", file=sys.stderr, flush=True)) if progress else None
    build = Build(settings, cfg, build_dir, command=command, progress=progress, say=say)
    build.run(force=force)
    card = json.loads((build_dir / "report" / "report_card.json").read_text(encoding="utf-8"))
    card["files"] = build.result("report")
    card["build_dir"] = str(build_dir)
    return card
