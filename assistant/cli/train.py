"""`onboard train RECIPE` - run a training recipe (merge / dpo / sft stages).

    onboard train docs-specialist --data data/docs
    onboard train models/recipes/seed.yaml --data data/docs --input partner=path/to/hf-model
    onboard train docs-specialist --data data/docs --quick          # smoke run, 5 steps a stage
    onboard train --list
"""
from __future__ import annotations

from pathlib import Path

from assistant.cli.options import add_json_option
from assistant.errors import OnboardError


def _parse_inputs(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, ref = pair.partition("=")
        if not sep or not name or not ref:
            raise OnboardError(f"--input {pair!r}: use ALIAS=MODEL, e.g. partner=path/to/model")
        out[name] = ref
    return out


def cmd_train(args, settings) -> int:
    from train.recipe import list_recipes, load_recipe

    if args.list or not args.recipe:
        if not args.list:
            raise OnboardError("give a recipe name or .yaml path (see: onboard train --list)")
        for name in list_recipes():
            r = load_recipe(name)
            print(f"{name:20s} {' -> '.join(s.type for s in r.stages):20s} {r.description.splitlines()[0] if r.description else ''}")
        return 0
    recipe = load_recipe(args.recipe)
    from train.run import run_recipe

    out = Path(args.out) if args.out else settings.home / "train" / recipe.name
    final = run_recipe(recipe, out, data_dir=Path(args.data) if args.data else None, base=args.base,
                       quick=args.quick, max_steps=args.max_steps, settings=settings,
                       progress=not args.json, models=_parse_inputs(args.input))
    if args.json:
        print((out / "run.json").read_text(encoding="utf-8"))
    else:
        print(final)
        print("next: onboard quantize " + str(final) + "   (HF -> GGUF for the assistant)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a specialist model from a recipe (merge / dpo / sft)",
                       description="Run a training recipe: stages in order, resumable; see docs/training.md")
    p.add_argument("recipe", nargs="?", help="recipe name (models/recipes/NAME.yaml) or .yaml path")
    p.add_argument("--data", help="folder with sft.jsonl / dpo.jsonl (the --out of `onboard synth`)")
    p.add_argument("--base", help="base model: registry name, .gguf or HF folder (default: the recipe's)")
    p.add_argument("--out", help="output folder (default: $ONBOARD_HOME/train/<recipe>); rerun to resume")
    p.add_argument("--quick", action="store_true", help="smoke run: at most 5 optimizer steps per stage")
    p.add_argument("--max-steps", type=int, help="cap every training stage at N optimizer steps")
    p.add_argument("--input", action="append", metavar="ALIAS=MODEL",
                   help="set a model alias of the recipe, e.g. partner=path/to/model (repeatable)")
    add_json_option(p, "no progress display; print run.json at the end")
    p.add_argument("--list", action="store_true", help="list the shipped recipes")
    p.set_defaults(func=cmd_train)
