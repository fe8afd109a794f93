"""Docs commands: build and query indexes, fetch known corpora, measure retrieval.

    onboard index ./docs --index mydocs [--chunk-tokens 300] [--overlap 30] [--chroma-url URL] [--precompute-kv]
    onboard index ./docs --watch       # then re-index whatever changes, until Ctrl+C
    onboard search "how do I load a model?" --index nitro --k 5 [--retrieval fused] [--json]
    onboard corpus get nitro [--from ../shared/corpora/nitro/docs]
    onboard eval-retrieval --mcq questions.jsonl --index nitro --modes rag,hybrid,hyde [--retrieval vector,bm25,fused] [--json]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from assistant.cli.options import add_chroma_option, add_json_option, add_model_options, add_verbs
from assistant.errors import OnboardError
from assistant.rag.lexical import RETRIEVAL_MODES as RANKINGS, check_retrieval_mode

MAX_WARNINGS_SHOWN = 20


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _print_index_stats(stats, as_json: bool) -> None:
    if as_json:
        print(json.dumps(stats.to_dict(), ensure_ascii=False))
        return
    for s in stats.skipped[:MAX_WARNINGS_SHOWN]:
        _err(f"onboard: warning: skipped {s['path']}: {s['reason']}")
    if len(stats.skipped) > MAX_WARNINGS_SHOWN:
        _err(f"onboard: warning: ... and {len(stats.skipped) - MAX_WARNINGS_SHOWN} more skipped files")
    speed = f", {stats.chunks_per_s:.1f} chunks/s" if stats.added else ""
    print(f"index {stats.name}: {stats.files} files ({stats.files_changed} changed), {stats.chunks} chunks "
          f"(+{stats.added} -{stats.deleted}) in {stats.seconds:.1f} s{speed}"
          + (f"; {len(stats.skipped)} files skipped (see warnings)" if stats.skipped else ""))


def cmd_index(args, settings) -> int:
    from assistant.rag.index import index_path

    if args.watch:
        return _watch(args, settings)
    stats = index_path(settings, Path(args.path), name=args.index or settings.index,
                       chunk_tokens=args.chunk_tokens, overlap=args.overlap,
                       progress=not args.json and sys.stderr.isatty(), max_file_mb=args.max_file_mb,
                       add=args.add, replace=args.replace)
    if stats.replaced and stats.replaced["sources"] and not args.json:
        r = stats.replaced
        _err(f"onboard: --replace deleted {r['files']} files / {r['chunks']} chunks of "
             f"{', '.join(r['sources'])} from index {stats.name}")
    _print_index_stats(stats, args.json)
    if args.precompute_kv:
        from assistant.chat.session import precompute_kv

        precompute_kv(settings, stats.name, progress=not args.json and sys.stderr.isatty())
    return 0


def _watch(args, settings) -> int:
    """`onboard index DIR --watch`: index, then re-index on every change; Ctrl+C ends it (exit 0)."""
    from assistant.rag.store import index_exists
    from assistant.rag.watch import watch_index

    if args.precompute_kv:
        raise OnboardError("--precompute-kv cannot be combined with --watch: run it once the docs settle, "
                           "e.g. onboard index DIR --precompute-kv")
    name = args.index or settings.index
    runs = 0

    def update(stats) -> None:
        nonlocal runs
        runs += 1
        _print_index_stats(stats, args.json)
        sys.stdout.flush()  # a line per update, also when piped into a log
        if runs == 1 and not args.json:
            _err(f"onboard: watching {args.path} for changes to index {name} (Ctrl+C stops)")

    try:
        watch_index(settings, Path(args.path), name, on_update=update,
                    on_error=lambda message: _err(f"onboard: warning: {message} (still watching)"),
                    progress=not args.json and sys.stderr.isatty(), chunk_tokens=args.chunk_tokens,
                    overlap=args.overlap, max_file_mb=args.max_file_mb)
    except KeyboardInterrupt:
        if not index_exists(settings, name):
            _err(f"onboard: stopped during an update; index {name} is finished by the next: onboard index {args.path}")
            return 130
        _err(f"onboard: stopped watching {args.path}; index {name} is up to date")
    return 0


def cmd_search(args, settings) -> int:
    from assistant.rag.index import open_retriever

    query = " ".join(args.query).strip()
    if not query:
        raise OnboardError('empty search query: e.g. onboard search "how do I install it?"')
    retrieval = check_retrieval_mode(args.retrieval or settings.retrieval)  # before any index is opened
    retriever = open_retriever(settings, args.index or settings.index)
    hits = retriever.search(query, args.k, mode=retrieval)
    if args.json:
        print(json.dumps({"query": query, "index": retriever.name, "retrieval": retrieval,
                          "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
        return 0
    if not hits:
        print("no matches")
    for i, h in enumerate(hits, 1):
        snippet = " ".join(h.text.split())
        snippet = snippet[:200] + ("…" if len(snippet) > 200 else "")
        print(f"[{i}] {h.score:.3f}  {h.path}" + (f"  § {h.heading}" if h.heading else ""))
        print(f"    {snippet}")
    return 0


def cmd_corpus_get(args, settings) -> int:
    from assistant.rag.corpus import get_corpus

    folder, stats = get_corpus(settings, args.name, from_dir=Path(args.from_dir) if args.from_dir else None,
                               progress=not args.json and sys.stderr.isatty())
    if not args.json:
        print(f"corpus {args.name}: {folder}")
    _print_index_stats(stats, args.json)
    if not args.json:
        print(f"chat with it: onboard chat --index {stats.name}")
    return 0


def cmd_corpus_list(args, settings) -> int:
    from assistant.rag.corpus import KNOWN_CORPORA, corpus_dir
    from assistant.rag.store import index_exists

    for spec in KNOWN_CORPORA.values():
        state = "indexed" if index_exists(settings, spec.name) else "not fetched"
        print(f"{spec.name}\t{state}\t{spec.license}\t{spec.description}\t({corpus_dir(settings, spec.name)})")
    return 0


def cmd_eval_retrieval(args, settings) -> int:
    from assistant.chat.modes import check_mode
    from assistant.eval.mcq import read_mcq
    from assistant.eval.retrieval import HYDE_MODEL, RETRIEVAL_MODES, evaluate_retrieval, write_chart
    from assistant.rag.index import open_retriever

    modes = [check_mode(m.strip(), RETRIEVAL_MODES) for m in args.modes.split(",") if m.strip()]
    if not modes:
        raise OnboardError(f"no retrieval mode given; choose from: {', '.join(RETRIEVAL_MODES)}")
    retrievals = [check_retrieval_mode(r.strip()) for r in args.retrieval.split(",") if r.strip()]
    if not retrievals:
        raise OnboardError("--retrieval is empty; give some of: vector, bm25, fused")
    questions = read_mcq(Path(args.mcq))
    if args.limit:
        questions = questions[:args.limit]
    retriever = open_retriever(settings, args.index or settings.index)
    models = {}
    if "hybrid" in modes or "hyde" in modes:
        from assistant.chat.session import open_model

        if "hybrid" in modes:
            models["hybrid"] = open_model(settings)
        if "hyde" in modes:
            models["hyde"] = open_model(settings, HYDE_MODEL)
    results = evaluate_retrieval(retriever, questions, modes, models, k_max=max(5, args.k),
                                 progress=not args.json and sys.stderr.isatty(), retrievals=retrievals)
    if args.chart:
        write_chart(results, Path(args.chart), title=f"Retrieval on {Path(args.mcq).name} (index {retriever.name})")
    if args.json:
        print(json.dumps({"index": retriever.name, "mcq": str(args.mcq), "questions": len(questions),
                          "model": settings.model, "results": [r.to_dict() for r in results]}, ensure_ascii=False))
        return 0
    print(f"retrieval on {len(questions)} questions, index {retriever.name} ({retriever.count()} chunks)")
    print(f"{'mode':8} {'ranking':8} {'hit@1':>6} {'hit@3':>6} {'hit@5':>6} {'MRR':>6} {'query p50':>10}")
    for r in results:
        print(f"{r.mode:8} {r.retrieval:8} {r.hits['hit@1']:6.3f} {r.hits['hit@3']:6.3f} {r.hits['hit@5']:6.3f} "
              f"{r.mrr:6.3f} {r.query_ms_p50:8.1f} ms")
    if args.chart:
        print(f"chart: {args.chart}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("index", help="build or update a docs index from a folder or file")
    p.add_argument("path", help="docs folder or file (md, mdx, rst, txt, html, pdf, docx, OpenAPI yaml/json)")
    p.add_argument("--index", help="index name (default: settings.index, 'docs')")
    p.add_argument("--chunk-tokens", type=int, help="tokens per chunk (default 300)")
    p.add_argument("--overlap", type=int, help="tokens shared by consecutive chunks (default 30)")
    p.add_argument("--max-file-mb", type=float, help="skip files larger than this (default 20)")
    add_chroma_option(p, "store the index on a Chroma server, e.g. http://host:8000")
    owner = p.add_mutually_exclusive_group()
    owner.add_argument("--add", action="store_true",
                       help="the index already holds another folder: keep it and add this one")
    owner.add_argument("--replace", action="store_true",
                       help="the index already holds another folder: delete its chunks (says how many)")
    p.add_argument("--precompute-kv", action="store_true",
                   help="also store every chunk's KV cache for the chat model (faster rag answers; "
                        "about 7 MB per chunk for the default model)")
    p.add_argument("--watch", action="store_true",
                   help="after indexing, keep watching the folder and re-index changed, added and deleted "
                        "files until Ctrl+C")
    add_json_option(p, "print the result as JSON")
    add_model_options(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="ranked doc chunks for a query (no model involved)")
    p.add_argument("query", nargs="*")
    p.add_argument("--index", help="index name (default: settings.index)")
    p.add_argument("--k", type=int, default=5, help="number of results (default 5)")
    p.add_argument("--retrieval", help="ranking: vector, bm25 or fused (default: settings.retrieval)")
    add_chroma_option(p, "search an index on a Chroma server")
    add_json_option(p)
    p.set_defaults(func=cmd_search)

    corpus = add_verbs(sub, "corpus", "fetch and index known reference corpora")
    p = corpus.add_parser("get", help="fetch a known corpus at its pinned commit and index it under its name")
    p.add_argument("name", help="corpus name, e.g. nitro")
    p.add_argument("--from", dest="from_dir", help="offline: a local copy of the corpus docs folder")
    add_chroma_option(p, "store the index on a Chroma server")
    add_json_option(p)
    p.set_defaults(func=cmd_corpus_get)
    p = corpus.add_parser("list", help="known corpora and whether they are indexed")
    p.set_defaults(func=cmd_corpus_list)

    p = sub.add_parser("eval-retrieval", help="hit@1/3/5 and MRR of an index on MCQs with sources")
    p.add_argument("--mcq", required=True, help="JSONL with question and sources (paths relative to the corpus)")
    p.add_argument("--index", help="index name (default: settings.index)")
    p.add_argument("--modes", default="rag", help="comma list of rag, hybrid, hyde (default: rag)")
    p.add_argument("--retrieval", default=",".join(RANKINGS),
                   help="comma list of rankings to score: vector, bm25, fused (default: all three)")
    p.add_argument("--k", type=int, default=5, help="results per query (MRR over these; default 5)")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--chart", help="also write a PNG bar chart here")
    add_chroma_option(p, "evaluate an index on a Chroma server")
    add_json_option(p)
    add_model_options(p)
    p.set_defaults(func=cmd_eval_retrieval)
