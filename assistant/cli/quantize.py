"""`onboard quantize | export | bundle | serve`: thin wrappers over quantize.convert/export/bundle/serve.

    onboard quantize out/merged --types f16,q8_0,q4_k_m --name nitro-135m
    onboard export ollama nitro-135m -o ~/exports
    onboard export jan nitro-135m -o ~/jan/models
    onboard bundle create nitro-135m -o nitro.onboard --index docs
    onboard bundle import nitro.onboard
    onboard serve --model nitro-135m --index docs --mode rag --port 8000
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from assistant.cli.options import add_json_option, add_model_options, add_threads_option, add_verbs
from assistant.errors import OnboardError


def _console():
    from rich.console import Console

    return Console(stderr=True)


def cmd_quantize(args, settings) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from quantize.convert import check_hf_dir, parse_types, quantize_model

    types = parse_types(args.types)
    eval_text = None
    if args.eval_text:
        p = Path(args.eval_text).expanduser()
        if p.is_dir():
            files = sorted([*p.rglob("*.md"), *p.rglob("*.txt")])
            eval_text = "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
        elif p.is_file():
            eval_text = p.read_text(encoding="utf-8", errors="replace")
        if not eval_text or not eval_text.strip():
            raise OnboardError(f"--eval-text {p}: no text found (give a .txt/.md file or a folder of them)")
    check_hf_dir(Path(args.hf_dir).expanduser())  # bad input fails before any progress display
    console = _console()
    steps = 1 + 2 * len([t for t in types if t != "f16"]) + (0 if args.no_verify else 1) + (1 if args.name else 0)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("quantize", total=steps)

        def step(msg: str):
            console.log(msg)
            progress.update(task, description=msg, advance=1)

        report = quantize_model(Path(args.hf_dir), out_dir=Path(args.out) if args.out else None, types=types,
                                name=args.name, settings=settings, verify=not args.no_verify,
                                eval_text=eval_text, register=args.register, progress=step)
    if args.json:
        print(json.dumps({t: {k: v for k, v in r.items() if k != "sample"} for t, r in report.items()}, indent=2))
        return 0
    from rich.table import Table

    table = Table(title="GGUF outputs (perplexity ratio vs f16 on held-out text)")
    for col in ("type", "size MB", "perplexity", "ratio", "limit", "tok/s", "verified", "tensor types", "file"):
        table.add_column(col, overflow="fold")
    for t, r in report.items():
        counts = ", ".join(f"{k}×{v}" for k, v in r["tensor_types"]["counts"].items())
        fmt = (lambda v: "-" if v is None else f"{v:.4g}")
        table.add_row(t + (" *" if r.get("registered") else ""), f"{r['size_mb']:.1f}", fmt(r.get("ppl")),
                      fmt(r.get("ppl_ratio")), fmt(r.get("max_ppl_ratio")), fmt(r.get("tokens_per_s")),
                      {True: "yes", False: "NO", None: "skipped"}[r.get("verified")], counts, Path(r["path"]).name)
    from rich.console import Console

    Console(width=max(140, Console().width)).print(table)
    print(f"files in {Path(next(iter(report.values()))['path']).parent}")
    if args.name:
        print(f"registered as {args.name} (*): onboard ask --model {args.name} \"...\"")
    return 0


def cmd_export(args, settings) -> int:
    from quantize.export import export_model

    folder = export_model(args.target, args.name, Path(args.out) if args.out else None, settings)
    print(folder)
    if args.target == "ollama":
        print(f"next: cd {folder} && ollama create {folder.name} -f Modelfile && ollama run {folder.name}",
              file=sys.stderr)
    else:
        print(f"next: copy {folder} into Jan's models folder (~/jan/models/) and restart Jan", file=sys.stderr)
    return 0


def cmd_bundle_create(args, settings) -> int:
    from quantize.bundle import create_bundle

    path = create_bundle(settings, args.name, Path(args.out), index=args.index, as_name=getattr(args, "as_name"),
                         progress=_console().log)
    print(path)
    return 0


def cmd_bundle_import(args, settings) -> int:
    from quantize.bundle import import_bundle

    info = import_bundle(settings, Path(args.file), force=args.force, expect_sha256=args.sha256,
                         progress=_console().log)
    print(json.dumps(info, indent=2) if args.json else
          f"installed model {info['model']}" + (f" and index {info['index']}" if info.get("index") else "")
          + f" into {settings.home}\ntry: onboard ask --model {info['model']}"
          + (f" --index {info['index']} --mode rag" if info.get("index") else "") + ' "..."')
    if not args.json:  # what the bundle may change is the user's to see
        shown = ", ".join(f"{k} = {v}" for k, v in info["settings"].items())
        print(f"bundle settings {'written to config.toml' if info['config_written'] else '(not applied: config.toml exists)'}"
              f": {shown}")
        if info["ignored_settings"]:
            print(f"ignored (a bundle may not set these): {', '.join(info['ignored_settings'])}", file=sys.stderr)
    return 0


def _number(option: str, low: float, strict: bool):
    import argparse

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value > low if strict else value >= low):  # also refuses nan
            raise argparse.ArgumentTypeError(f"{option} must be a number {'>' if strict else '>='} {low:g}, "
                                             f"got {text!r}")
        return value
    return parse


def _positive(option: str):
    return _number(option, 0, strict=True)


def _non_negative(option: str):
    return _number(option, 0, strict=False)


def cmd_serve(args, settings) -> int:
    import os

    from quantize.serve import build_state, create_app, host_warning, make_server

    api_key = args.api_key or os.environ.get("ONBOARD_API_KEY")
    console = _console()
    kw = dict(model=args.model, index=args.index, api_key=api_key, cite_sources=not args.no_sources,
              request_timeout=args.request_timeout or None, max_body_bytes=int(args.max_body_mb * 1_000_000),
              bind_host=args.host, allow_hosts=tuple(args.allow_host or ()))
    try:
        state = build_state(settings, mode=args.mode or settings.mode, **kw)
    except OnboardError as e:
        if args.mode or settings.mode == "plain":
            raise
        # no --mode given and the default (rag) has no index yet: still serve, without retrieval
        console.print(f"[yellow]{e}: serving in plain mode[/yellow]")
        state = build_state(settings, mode="plain", **kw)
    warning = host_warning(args.host, api_key)
    if warning:
        console.print(f"[yellow]{warning}[/yellow]")
    base = f"http://{args.host}:{args.port}/v1"
    console.print(f"serving [bold]{state.model_id}[/bold] (mode {state.mode}) at {base}  "
                  f"models: {', '.join(state.model_ids())}  (Ctrl+C stops)")
    make_server(create_app(state), args.host, args.port).run()
    return 0


def register(sub) -> None:
    p = sub.add_parser("quantize", help="HF checkpoint -> GGUF f16/q8_0/q4_k_m, verified and registered")
    p.add_argument("hf_dir", help="folder written by save_pretrained (config.json, tokenizer, weights)")
    p.add_argument("--types", default="f16,q8_0,q4_k_m", help="comma list of f16,q8_0,q6_k,q5_k_m,q4_k_m,q4_0")
    p.add_argument("--name", help="register the smallest verified output under this model name")
    p.add_argument("--register", help="register this type instead of the smallest verified one")
    p.add_argument("-o", "--out", help="folder for the GGUF files (default: $ONBOARD_HOME/cache/quantize/NAME)")
    p.add_argument("--eval-text", help="held-out docs text (file, or folder of .md/.txt) for the perplexity check")
    p.add_argument("--no-verify", action="store_true", help="skip load/generate/perplexity checks")
    add_threads_option(p)
    add_json_option(p, "print the report as JSON")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("export", help="export a model for Ollama (Modelfile) or Jan (model.json)")
    p.add_argument("target", choices=["ollama", "jan"], help="ollama | jan")
    p.add_argument("name", help="registry name or .gguf path")
    p.add_argument("-o", "--out", help="parent folder; the export lands in OUT/NAME (default: $ONBOARD_HOME/exports/TARGET)")
    p.set_defaults(func=cmd_export)

    bundle = add_verbs(sub, "bundle", "one-file bundle of a model + docs index for offline machines")
    p = bundle.add_parser("create", help="write model, index, settings and sha256 checksums into FILE")
    p.add_argument("name", help="registry name of the model")
    p.add_argument("-o", "--out", required=True, help="bundle file to write (e.g. nitro.onboard)")
    p.add_argument("--index", help="docs index to include (default: none)")
    p.add_argument("--as", dest="as_name", help="name the model gets in the bundle (needed for packaged models)")
    p.set_defaults(func=cmd_bundle_create)
    p = bundle.add_parser("import", help="verify a bundle's checksums and install it into ONBOARD_HOME")
    p.add_argument("file", help="bundle file")
    p.add_argument("--force", action="store_true", help="replace a model/index of the same name")
    p.add_argument("--sha256", help="refuse the bundle unless the whole file has this sha256 (printed by create)")
    add_json_option(p)
    p.set_defaults(func=cmd_bundle_import)

    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (/v1/chat/completions, /v1/models)")
    add_model_options(p)
    p.add_argument("--index", help="docs index for rag/hybrid (default: settings.index)")
    p.add_argument("--mode", help="plain | rag | hybrid (default: settings.mode); per request: model id NAME:MODE")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require Authorization: Bearer KEY (or set ONBOARD_API_KEY)")
    p.add_argument("--no-sources", action="store_true", help="do not append the Sources list to rag answers")
    p.add_argument("--request-timeout", type=_non_negative("--request-timeout"), default=600.0, metavar="SECONDS",
                   help="most seconds a request may take, queueing included; then 504 (default 600, 0 = none)")
    p.add_argument("--max-body-mb", type=_positive("--max-body-mb"), default=1.0, metavar="MB",
                   help="largest request body accepted, in MB (default 1); larger ones get 413")
    p.add_argument("--allow-host", action="append", metavar="NAME",
                   help="also answer this Host name on a keyless loopback server (e.g. behind a proxy)")
    p.set_defaults(func=cmd_serve)
