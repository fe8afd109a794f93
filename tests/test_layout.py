"""The package layout holds: imports inside assistant/ flow one way (cli -> build -> tui/eval ->
chat -> rag -> llm -> settings/errors/files), there is no import cycle anywhere, and train/ and
quantize/ never import a CLI module. Imports inside functions count too: they are still edges."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "train", "quantize")
# Lower number = lower layer; a module may import its own layer's package or any lower layer.
LAYERS = {"assistant": 0, "assistant.errors": 0, "assistant.settings": 0, "assistant.files": 0,
          "assistant.cpu": 0, "assistant.llm": 1, "assistant.rag": 2, "assistant.chat": 3,
          "assistant.tui": 4, "assistant.eval": 4, "assistant.build": 5, "assistant.cli": 6}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports (resolving `from pkg import module` to the module)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_pkg else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join(here + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _layer(module: str) -> tuple[str, int] | None:
    best = None
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, rank)
    return best


def test_no_upward_import_inside_assistant():
    bad = []
    for mod, deps in _graph().items():
        src = _layer(mod)
        if src is None or src[0] == "assistant" and mod != "assistant":
            continue
        for dep in deps:
            dst = _layer(dep)
            if dst is None:  # train / quantize: only build and the CLI may reach them
                if src[1] < LAYERS["assistant.build"]:
                    bad.append(f"{mod} -> {dep} (below build, assistant/ must not import train/ or quantize/)")
                continue
            same_package = dst[0] == src[0]
            if dst[1] > src[1] or (dst[1] == src[1] and not same_package and dst[1] != 0):
                bad.append(f"{mod} -> {dep}")
    assert not bad, "upward or sideways imports:\n" + "\n".join(sorted(bad))


def test_train_and_quantize_import_no_cli_module():
    bad = [f"{mod} -> {dep}" for mod, deps in _graph().items() if mod.split(".")[0] in ("train", "quantize")
           for dep in deps if dep == "assistant.cli" or dep.startswith("assistant.cli.")]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_over_the_size_limit():
    big = {str(p.relative_to(ROOT)): n for p in _modules().values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them): {big}"
