"""Synthesize training data from a docs corpus with a local teacher.

    onboard synth ./docs --out data/nitro --teacher qwen2.5-coder-1.5b --questions 3
    summary = synthesize(Path("docs"), Path("data/nitro"), teacher="smollm2-135m", max_chunks=20)

Pipeline: the index's chunker cuts the corpus (settings.chunk_tokens / chunk_overlap, 300/30);
per chunk the teacher writes `questions_per_chunk` Q&A pairs, one call each with a rotating
kind (factual, how-to, why, multi-step) and the questions already asked, under a JSON schema
(a llama.cpp grammar locally); the student answers each question closed-book (rejected
answers for DPO); the teacher paraphrases the chunk `rephrasings` times. Each finished chunk
is one line appended to qa.jsonl (fsync'ed), keyed by chunk id: a run killed at any point
(kill -9 included) resumes at the next unfinished chunk, without duplicates or holes. Then the
pairs are filtered (train.data_filter) and formatted (train.synth_format) into sft.jsonl,
dpo.jsonl, rephrase.jsonl and a dataset card; that last step is cheap and rerun every time.

Deterministic for a seed: chunk sampling and every generation seed derive from (seed, chunk
id, item), and the model's prompt cache is reset per chunk so history does not leak in.
"""
from __future__ import annotations

import json
import os
import random
import sys
from collections import Counter
from pathlib import Path

from assistant.errors import OnboardError
from train.teacher import DEFAULT_TEACHER, BadReply, call_seed

KINDS = ("factual", "how-to", "why", "multi-step")
KIND_HINTS = {
    "factual": "a factual question (what, which, where, what is the default...) answered by a fact stated in the excerpt",
    "how-to": "a how-to question about doing something the excerpt explains (a command, setting, request or step)",
    "why": "a why question about a reason, purpose or benefit that the excerpt gives",
    "multi-step": "a question whose answer combines two or more details or steps from the excerpt",
}
SYSTEM_QA = (
    "You write question and answer pairs that teach a documentation assistant. The question must "
    "be one a user of the software would ask and must be answerable from the excerpt alone. The "
    "answer must be correct, use only facts from the excerpt in its own terms (names, commands, "
    "values), and be one to three sentences. Reply with a JSON object only."
)
SYSTEM_REPHRASE = (
    "You rewrite documentation passages in different words for study notes. Keep every fact, "
    "name, command, option and number exactly; add nothing that is not in the passage."
)
REPHRASE_STYLES = ("a plain-language explanation", "a short FAQ-style summary",
                   "a concise bulleted summary", "a step-by-step walkthrough")
QUESTION_MAX_CHARS, ANSWER_MAX_CHARS = 200, 480
QA_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 12, "maxLength": QUESTION_MAX_CHARS},
        "answer": {"type": "string", "minLength": 8, "maxLength": ANSWER_MAX_CHARS},
    },
    "required": ["question", "answer"],
}
QA_MAX_TOKENS = 256        # the schema's lengths close the JSON well before this
STUDENT_MAX_TOKENS = 128
REPHRASE_MAX_TOKENS = 768
MIN_CHUNK_TOKENS = 32      # a heading-only scrap teaches nothing
GENERATION_KEYS = ("teacher", "teacher_model", "student", "questions_per_chunk", "rephrasings",
                   "seed", "chunk_tokens", "chunk_overlap", "grammar")


def qa_messages(chunk, kind: str, asked: list[str]) -> list[dict]:
    where = f" (from {chunk.path}" + (f", section {chunk.heading})" if chunk.heading else ")")
    user = (f"Documentation excerpt{where}:\n<<<\n{chunk.text.strip()}\n>>>\n\n"
            f"Write {KIND_HINTS[kind]}, and its answer.")
    if asked:
        user += "\nAsk something different from these questions already written:\n" + \
                "\n".join(f"- {q}" for q in asked)
    user += '\nReply as JSON: {"question": "...", "answer": "..."}'
    return [{"role": "system", "content": SYSTEM_QA}, {"role": "user", "content": user}]


def check_qa(obj: dict) -> dict:
    q, a = obj.get("question"), obj.get("answer")
    if not isinstance(q, str) or not isinstance(a, str) or not q.strip() or not a.strip():
        raise BadReply("question or answer missing or empty")
    return {"question": " ".join(q.split()), "answer": a.strip()}


def rephrase_messages(chunk, style: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_REPHRASE},
            {"role": "user", "content": f"Rewrite this passage as {style}:\n<<<\n{chunk.text.strip()}\n>>>"}]


# --- append-only record log ----------------------------------------------------------------
def load_records(path: Path) -> dict[str, dict]:
    """Records keyed by chunk id. A torn last line (killed mid-write) is cut off the file."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    records: dict[str, dict] = {}
    for line in data[:end].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("chunk_id") and rec["chunk_id"] not in records:
            records[rec["chunk_id"]] = rec
    return records


def append_record(path: Path, record: dict) -> None:
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write of the whole line: a kill leaves whole lines or a torn tail
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(out_dir: Path):
    import fcntl

    f = open(out_dir / ".synth.lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise OnboardError(f"another onboard synth is writing to {out_dir}; wait for it or use another --out") from None
    return f


def _check_config(out_dir: Path, config: dict) -> None:
    from assistant.files import atomic_write_text

    path = out_dir / "synth-config.json"
    if path.is_file() and (out_dir / "qa.jsonl").is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        diff = [k for k in GENERATION_KEYS if k in old and old[k] != config.get(k)]
        if diff:
            k = diff[0]
            raise OnboardError(f"{out_dir} holds data made with {k}={old[k]!r}, not {config.get(k)!r}: "
                               "pass a new --out, or delete its qa.jsonl to start over")
    atomic_write_text(path, json.dumps(config, indent=2) + "\n")


# --- selection ------------------------------------------------------------------------------
def select_chunks(chunks: list, max_chunks: int | None, seed: int) -> list:
    """Usable chunks in corpus order; with max_chunks a seeded sample that only grows when
    max_chunks grows (the first k of one seeded shuffle), so a bigger rerun extends a run."""
    usable = [c for c in chunks if c.n_tokens >= MIN_CHUNK_TOKENS]
    if max_chunks is None or max_chunks >= len(usable):
        return usable
    order = list(range(len(usable)))
    random.Random(seed).shuffle(order)
    return [usable[i] for i in sorted(order[:max_chunks])]


def synth_chunk(chunk, teacher, student, *, questions: int, rephrasings: int, seed: int) -> dict:
    """One chunk -> one record (pairs with student answers, rephrasings, failure counts)."""
    from assistant.chat.prompts import SYSTEM_PLAIN

    teacher.reset()
    if student is not None:
        with student.lock:
            student.llm.reset()
    before = dict(teacher.stats.to_dict())
    offset = call_seed(seed, chunk.id, "kind") % len(KINDS)
    pairs, asked = [], []
    for j in range(questions):
        kind = KINDS[(offset + j) % len(KINDS)]
        got = teacher.ask_json(qa_messages(chunk, kind, asked), QA_SCHEMA, check_qa,
                               max_tokens=QA_MAX_TOKENS, temperature=0.7,
                               seed=call_seed(seed, chunk.id, "qa", j))
        if got is not None:
            asked.append(got["question"])
            pairs.append({"kind": kind, **got})
    if student is not None:
        for j, p in enumerate(pairs):
            p["student"] = student.chat(
                [{"role": "system", "content": SYSTEM_PLAIN}, {"role": "user", "content": p["question"]}],
                max_tokens=STUDENT_MAX_TOKENS, temperature=0.0, seed=call_seed(seed, chunk.id, "student", j),
            ).strip()
    texts = []
    for r in range(rephrasings):
        style = REPHRASE_STYLES[(offset + r) % len(REPHRASE_STYLES)]
        budget = min(REPHRASE_MAX_TOKENS, int(chunk.n_tokens * 1.4) + 32)
        text = teacher.ask_text(rephrase_messages(chunk, style), max_tokens=budget, temperature=0.7,
                                seed=call_seed(seed, chunk.id, "rephrase", r))
        if text is not None:
            texts.append(text.strip())
    after = teacher.stats.to_dict()
    return {
        "chunk_id": chunk.id, "path": chunk.path, "heading": chunk.heading, "position": chunk.position,
        "text": chunk.text, "pairs": pairs, "rephrasings": texts,
        "asks": after["requests"] - before["requests"],
        "first_try_ok": after["first_try_ok"] - before["first_try_ok"],
        "json_asks": after["json_requests"] - before["json_requests"],
        "json_first_parsed": after["json_first_parsed"] - before["json_first_parsed"],
        "skipped": after["skipped"] - before["skipped"],
        "completion_tokens": after["completion_tokens"] - before["completion_tokens"],
        "seconds": round(after["seconds"] - before["seconds"], 3),
    }


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[pairs]} pairs"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(),
                    console=Console(file=sys.stderr), disable=not enabled, transient=False)


def _check_args(questions_per_chunk: int, rephrasings: int, distractors: int, p_oracle: float,
                max_chunks: int | None) -> None:
    if questions_per_chunk < 0 or rephrasings < 0 or distractors < 0:
        raise OnboardError("--questions, --rephrasings and --distractors must be 0 or more")
    if questions_per_chunk == 0 and rephrasings == 0:
        raise OnboardError("nothing to make: --questions and --rephrasings are both 0")
    if not 0.0 <= p_oracle <= 1.0:
        raise OnboardError(f"--p-oracle {p_oracle} must be between 0 and 1")
    if max_chunks is not None and max_chunks < 1:
        raise OnboardError("--max-chunks must be 1 or more")


def synthesize(corpus: Path, out_dir: Path, teacher: str = DEFAULT_TEACHER, *, questions_per_chunk: int = 3,
               rephrasings: int = 1, distractors: int = 3, p_oracle: float = 0.8,
               student: str | None = DEFAULT_TEACHER, max_chunks: int | None = None, seed: int = 0,
               settings=None, progress: bool = True, teacher_model: str | None = None,
               grammar: bool = True, filter_config=None, cloze_per_chunk: int | None = None) -> dict:
    """Generate (or resume) qa.jsonl for the corpus, then write the filtered datasets + card."""
    from assistant.rag.chunking import chunk_documents
    from assistant.rag.ingest import load_documents
    from assistant.settings import load_settings
    from train.synth_format import corpus_hash, write_card

    settings = settings or load_settings()
    _check_args(questions_per_chunk, rephrasings, distractors, p_oracle, max_chunks)
    corpus, out_dir = Path(corpus).expanduser(), Path(out_dir).expanduser()
    docs, report = load_documents(corpus)
    all_chunks = chunk_documents(docs, settings.chunk_tokens, settings.chunk_overlap)
    selected = select_chunks(all_chunks, max_chunks, seed)
    if not selected:
        raise OnboardError(f"{corpus} has no chunk of {MIN_CHUNK_TOKENS}+ tokens to learn from")
    teacher = teacher or DEFAULT_TEACHER
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OnboardError(f"cannot create {out_dir}: {e.strerror}") from None
    lock = _lock(out_dir)
    try:
        config = {"teacher": teacher, "teacher_model": teacher_model, "student": student,
                  "questions_per_chunk": questions_per_chunk, "rephrasings": rephrasings, "seed": seed,
                  "chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap,
                  "grammar": grammar, "max_chunks": max_chunks, "distractors": distractors,
                  "p_oracle": p_oracle, "corpus": str(corpus.resolve())}
        _check_config(out_dir, config)
        records = load_records(out_dir / "qa.jsonl")
        todo = [c for c in selected if c.id not in records]
        teacher_info = {"name": teacher}
        if todo:
            teacher_info = _generate(todo, selected, records, out_dir, config, settings, progress)
        elif (out_dir / "card.json").is_file():
            teacher_info = json.loads((out_dir / "card.json").read_text(encoding="utf-8")).get("teacher", teacher_info)
        recs = [records[c.id] for c in selected]
        outputs = _filter_and_write(recs, all_chunks, out_dir, config, filter_config, cloze_per_chunk)
        summary = {
            "out_dir": str(out_dir), "command": "synth", "teacher": teacher_info, "student": student,
            "corpus": {"path": str(corpus.resolve()), "sha256": corpus_hash(all_chunks),
                       "documents": report.documents, "chunks": len(all_chunks),
                       "chunks_used": len(selected)},
            "settings": {k: v for k, v in config.items() if k != "corpus"},
            "counts": {"chunks": len(selected), "generated_now": len(todo), **outputs.pop("counts")},
            **outputs,
        }
        write_card(out_dir, summary)
        return summary
    finally:
        lock.close()


def _generate(todo: list, selected: list, records: dict[str, dict], out_dir: Path, config: dict,
              settings, progress: bool) -> dict:
    """Synthesize the chunks not done yet, appending each record as it finishes (into `records`
    too); returns the teacher's description."""
    from train.teacher import open_teacher

    questions = config["questions_per_chunk"]
    teacher = open_teacher(config["teacher"], settings, model=config["teacher_model"],
                           use_grammar=config["grammar"])
    student_model = None
    if config["student"] and questions:
        from assistant.chat.session import open_model

        student_model = open_model(settings, config["student"])
    qa_path = out_dir / "qa.jsonl"
    n_pairs = sum(len(records[c.id]["pairs"]) for c in selected if c.id in records)
    with _progress(progress) as bar:
        task = bar.add_task(f"synth ({teacher.name})", total=len(selected),
                            completed=len(selected) - len(todo), pairs=n_pairs)
        for chunk in todo:
            rec = synth_chunk(chunk, teacher, student_model, questions=questions,
                              rephrasings=config["rephrasings"], seed=config["seed"])
            append_record(qa_path, rec)
            records[chunk.id] = rec
            n_pairs += len(rec["pairs"])
            bar.update(task, advance=1, pairs=n_pairs)
    return teacher.describe()


def _filter_and_write(recs: list[dict], all_chunks: list, out_dir: Path, config: dict, filter_config,
                      cloze_per_chunk: int | None = None) -> dict:
    """Filter the records' pairs and rephrasings, write the datasets; returns the summary's
    counts, filter, dpo_rejected_from, teacher_stats and files entries."""
    from train.data_filter import FilterConfig, embed, filter_pairs, filter_texts
    from train.synth_format import write_datasets

    pairs = [{"chunk_id": r["chunk_id"], **p} for r in recs for p in r["pairs"]]
    sources = {r["chunk_id"]: r["text"] for r in recs}
    cfg = filter_config or FilterConfig()
    vectors = embed([p["question"] for p in pairs]) if pairs else None
    vec_of = {id(p): v for p, v in zip(pairs, vectors if vectors is not None else [])}
    kept, dropped = filter_pairs(pairs, sources, cfg, vectors=vectors)
    texts, text_dropped = [], Counter()
    for r in recs:
        k, d = filter_texts(r.get("rephrasings", []), r["text"])
        texts += k
        text_dropped.update(d)
    chunk_dicts = {r["chunk_id"]: r for r in recs}
    pool = [{"chunk_id": c.id, "path": c.path, "heading": c.heading, "text": c.text,
             "position": c.position} for c in all_chunks if c.n_tokens >= MIN_CHUNK_TOKENS]
    written = write_datasets(out_dir, kept, chunks=chunk_dicts, pool=pool, rephrasings=texts,
                             vectors=[vec_of[id(p)] for p in kept] if kept else None,
                             distractors=config["distractors"], p_oracle=config["p_oracle"], seed=config["seed"],
                             cloze_per_chunk=cloze_per_chunk)
    return {
        "counts": {"pairs_raw": len(pairs), **written["counts"]},
        "filter": {"input": len(pairs), "kept": len(kept), "dropped": dict(dropped),
                   "config": cfg.to_dict(),
                   "rephrase": {"input": sum(len(r.get("rephrasings", [])) for r in recs),
                                "kept": len(texts), "dropped": dict(text_dropped)}},
        "dpo_rejected_from": written["dpo_rejected_from"],
        "teacher_stats": teacher_stats(recs),
        "files": written["files"],
    }


def teacher_stats(recs: list[dict]) -> dict:
    """The teacher's counters summed over the records (the ones made in earlier runs too)."""
    asks = sum(r.get("asks", 0) for r in recs)
    stats = {
        "asks": asks, "first_try_ok": sum(r.get("first_try_ok", 0) for r in recs),
        "skipped": sum(r.get("skipped", 0) for r in recs),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in recs),
        "seconds": round(sum(r.get("seconds", 0.0) for r in recs), 2),
    }
    stats["first_try_rate"] = round(stats["first_try_ok"] / asks, 4) if asks else None
    json_asks = stats["json_asks"] = sum(r.get("json_asks", 0) for r in recs)
    stats["parse_rate"] = round(sum(r.get("json_first_parsed", 0) for r in recs) / json_asks, 4) \
        if json_asks else None
    return stats
