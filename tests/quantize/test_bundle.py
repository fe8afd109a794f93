"""Air-gapped bundle: create -> import into a fresh ONBOARD_HOME -> `onboard ask --mode rag` works;
tampered, truncated, padded or path-escaping bundles are refused and install nothing."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from assistant.errors import OnboardError
from assistant.settings import Settings
from quantize.bundle import MANIFEST, create_bundle, import_bundle
from tests.quantize.widget_docs import DOCS


@pytest.fixture(scope="module")
def bundle_file(tmp_path_factory, smollm_gguf) -> Path:
    """A bundle of the real SmolLM2 (as 'widget-helper') and a small real Chroma index."""
    from assistant.rag.index import index_path

    home = tmp_path_factory.mktemp("bundle_src_home")
    docs = home / "docs_src"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    settings = Settings(home=home)
    index_path(settings, docs, name="widgetd", progress=False)
    out = tmp_path_factory.mktemp("bundles") / "widget.onboard"
    return create_bundle(settings, "smollm2-135m", out, index="widgetd", as_name="widget-helper")


def test_create_import_then_ask_rag_in_a_fresh_home(bundle_file, run_cli, tmp_path, monkeypatch):
    with tarfile.open(bundle_file) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile(MANIFEST))
    assert names[0] == MANIFEST and "SHA256SUMS" in names and "models/widget-helper/model.gguf" in names
    assert manifest["model"] == "widget-helper" and manifest["index"] == "widgetd" and manifest["index_chunks"] >= 2
    assert all(len(e["sha256"]) == 64 for e in manifest["files"].values())

    fresh = tmp_path / "offline_home"
    monkeypatch.setenv("ONBOARD_HOME", str(fresh))
    monkeypatch.delenv("ONBOARD_MODEL", raising=False)  # the suite pins a model; the bundle's config must decide
    code, out, err = run_cli("bundle", "import", str(bundle_file), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info == {**info, "model": "widget-helper", "index": "widgetd", "config_written": True}
    assert 'model = "widget-helper"' in (fresh / "config.toml").read_text()
    assert not [p for p in fresh.iterdir() if p.name.startswith(".import-")]  # staging cleaned up

    # the imported config makes the bundle the default: plain `onboard ask --mode rag` uses it
    code, out, err = run_cli("ask", "--mode", "rag", "--max-tokens", "16", "--json",
                             "What port does widgetd use by default?")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["model"] == "widget-helper" and answer["answer"].strip()
    assert answer["sources"][0]["path"] == "install.md"

    # importing again needs --force, which replaces the installed copy
    code, _, err = run_cli("bundle", "import", str(bundle_file))
    assert code != 0 and "already exists" in err and "--force" in err
    code, _, err = run_cli("bundle", "import", str(bundle_file), "--force")
    assert code == 0, err


def _copy(bundle_file: Path, tmp_path: Path) -> Path:
    return Path(shutil.copyfile(bundle_file, tmp_path / "copy.onboard"))


def _refused(path: Path, home: Path, needle: str, **kw) -> None:
    with pytest.raises(OnboardError, match=needle):
        import_bundle(Settings(home=home), path, **kw)
    assert not (home / "models").exists() and not (home / "indexes").exists()
    assert not home.exists() or not [p for p in home.iterdir() if p.name.startswith(".import-")]


def test_tampered_model_bytes_are_refused(bundle_file, tmp_path):
    bad = _copy(bundle_file, tmp_path)
    with tarfile.open(bad) as tar:
        offset = tar.getmember("models/widget-helper/model.gguf").offset_data
    with open(bad, "r+b") as f:  # flip one byte well inside the weights; the tar itself stays valid
        f.seek(offset + 5_000_000)
        byte = f.read(1)
        f.seek(offset + 5_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    _refused(bad, tmp_path / "home", "failed its checksum check on models/widget-helper/model.gguf")


def test_truncated_bundle_is_refused(bundle_file, tmp_path):
    cut = tmp_path / "cut.onboard"
    with open(bundle_file, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(bundle_file.stat().st_size // 2))
    _refused(cut, tmp_path / "home", "damaged or truncated")


def test_extra_or_escaping_members_are_refused(bundle_file, tmp_path):
    padded = _copy(bundle_file, tmp_path)
    with tarfile.open(padded, "a") as tar:
        data = b"#!/bin/sh\necho surprise\n"
        info = tarfile.TarInfo("models/widget-helper/run.sh")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    _refused(padded, tmp_path / "home1", "run.sh is not in its manifest")

    escaping = tmp_path / "escape.onboard"
    shutil.copyfile(bundle_file, escaping)
    with tarfile.open(escaping, "a") as tar:
        info = tarfile.TarInfo("../../outside.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    _refused(escaping, tmp_path / "home2", "contains an unsafe entry")
    assert not (tmp_path / "outside.txt").exists()


def test_wrong_expected_sha256_and_non_bundles_are_refused(bundle_file, tmp_path, run_cli):
    _refused(bundle_file, tmp_path / "home1", "expected sha256", expect_sha256="0" * 64)
    not_tar = tmp_path / "notes.txt"
    not_tar.write_text("just text\n" * 100)
    with pytest.raises(OnboardError, match="damaged or truncated"):
        import_bundle(Settings(home=tmp_path / "home2"), not_tar)
    code, _, err = run_cli("bundle", "import", str(tmp_path / "missing.onboard"))
    assert code != 0 and "bundle file not found" in err


def test_create_errors_are_clear(run_cli, tmp_path):
    code, _, err = run_cli("bundle", "create", "smollm2-135m", "-o", str(tmp_path / "x.onboard"))
    assert code != 0 and "--as smollm2-135m-docs" in err
    code, _, err = run_cli("bundle", "create", "smollm2-135m", "--as", "s", "--index", "nope",
                           "-o", str(tmp_path / "x.onboard"))
    assert code != 0 and "no complete index named 'nope'" in err
    assert not (tmp_path / "x.onboard").exists()


def _with_settings(bundle_file: Path, tmp_path: Path, settings_text: str) -> Path:
    """The bundle with its settings.toml replaced and every checksum made to match, as anyone
    who edits a bundle can do (checksums catch damage, not authorship)."""
    import hashlib

    out = tmp_path / "edited.onboard"
    data = settings_text.encode()
    with tarfile.open(bundle_file) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        manifest = json.load(src.extractfile(MANIFEST))
        manifest["files"]["settings.toml"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        sums = "".join(f"{e['sha256']}  {arc}\n" for arc, e in sorted(manifest["files"].items()))
        for member in src.getmembers():
            body = {MANIFEST: json.dumps(manifest).encode(), "SHA256SUMS": sums.encode(), "settings.toml": data}
            if member.name in body:
                member.size = len(body[member.name])
                dst.addfile(member, io.BytesIO(body[member.name]))
            else:
                dst.addfile(member, src.extractfile(member))
    return out


def test_import_takes_only_allowlisted_settings(bundle_file, tmp_path, run_cli, monkeypatch):
    """Issue 20, defect 5: a bundle's settings.toml became config.toml as is."""
    hostile = _with_settings(bundle_file, tmp_path, 'model = "smollm2-135m"\nindex = "other"\nmode = "hybrid"\n'
                             'top_k = 6\nchroma_url = "http://203.0.113.7:8000"\nhome = "/tmp/elsewhere"\n'
                             'n_ctx = -5\nn_threads = 64\n')
    fresh = tmp_path / "home"
    monkeypatch.setenv("ONBOARD_HOME", str(fresh))
    monkeypatch.delenv("ONBOARD_MODEL", raising=False)
    code, out, err = run_cli("bundle", "import", str(hostile))
    assert code == 0, err
    assert "mode = hybrid" in out and "top_k = 6" in out
    assert "chroma_url, home, n_ctx, n_threads" in err
    from assistant.settings import load_settings

    s = load_settings()
    assert s.chroma_url is None and s.home == fresh and s.n_ctx == Settings(home=fresh).n_ctx
    assert (s.model, s.index, s.mode, s.top_k) == ("widget-helper", "widgetd", "hybrid", 6)
    config = (fresh / "config.toml").read_text()
    assert "chroma_url" not in config and "home" not in config.split("\n", 1)[1] and "n_ctx" not in config


def test_bundle_with_out_of_range_settings_is_refused(bundle_file, tmp_path):
    bad = _with_settings(bundle_file, tmp_path, "top_k = -5\n")
    _refused(bad, tmp_path / "home", "bundle .*top_k must be")
