import json

import pytest

from assistant.errors import OnboardError
from assistant.llm.registry import PACKAGED, check_gguf, list_models, register_built_model, resolve_model
from assistant.settings import load_settings


def test_default_model_resolves_to_real_gguf(smollm_gguf):
    assert smollm_gguf.read_bytes()[:4] == b"GGUF"
    assert smollm_gguf.stat().st_size > 50_000_000


def test_list_has_three_named_models(onboard_home):
    rows = {r.name: r for r in list_models(load_settings())}
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} <= set(rows)
    assert rows["smollm2-135m"].installed
    for r in rows.values():
        assert r.installed or r.install.startswith("pip install")


def test_models_list_cli(run_cli):
    code, out, _ = run_cli("models", "list", "--json")
    assert code == 0
    names = [r["name"] for r in json.loads(out)]
    assert names[:3] == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]


def test_unknown_name_is_clear_error():
    with pytest.raises(OnboardError, match="unknown model 'nope'"):
        resolve_model("nope", load_settings())


@pytest.mark.parametrize("content,match", [(b"", "not a GGUF"), (b"PK\x03\x04zip", "not a GGUF")])
def test_non_gguf_rejected(tmp_path, content, match):
    p = tmp_path / "fake.gguf"
    p.write_bytes(content)
    with pytest.raises(OnboardError, match=match):
        check_gguf(p)


def test_missing_file_rejected(tmp_path):
    with pytest.raises(OnboardError, match="not found"):
        resolve_model(str(tmp_path / "missing.gguf"), load_settings())


def test_built_model_registered_and_resolved(onboard_home, smollm_gguf, tmp_path):
    s = load_settings()
    register_built_model(s, "my-specialist", smollm_gguf, {"arch": "llama", "quant": "Q4_1", "recipe": "test"})
    assert resolve_model("my-specialist", s).read_bytes()[:4] == b"GGUF"
    row = [r for r in list_models(s) if r.name == "my-specialist"][0]
    assert row.source == "built" and row.installed


def test_parts_assembled_atomically_with_checksum(onboard_home, tmp_path, monkeypatch):
    """A fake two-part package: assembled once, and a checksum mismatch leaves no file behind."""
    import dataclasses
    import hashlib
    import sys

    pkg = tmp_path / "site"
    for i, data in enumerate([b"GGUF-part-one-", b"part-two"], 1):
        (pkg / f"fakeparts{i}" / "data").mkdir(parents=True)
        (pkg / f"fakeparts{i}" / "__init__.py").write_text("")
        (pkg / f"fakeparts{i}" / "data" / "p.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(pkg))
    good = hashlib.sha256(b"GGUF-part-one-part-two").hexdigest()
    base = dataclasses.replace(PACKAGED["qwen2.5-coder-0.5b"], name="fake",
                               parts=(("fakeparts1", "data/p.bin"), ("fakeparts2", "data/p.bin")))
    s = load_settings()
    monkeypatch.setitem(PACKAGED, "fake", dataclasses.replace(base, sha256="0" * 64))
    with pytest.raises(OnboardError, match="sha256"):
        resolve_model("fake", s)
    assert not list((s.cache_dir / "models").glob("*"))  # nothing half-written left
    monkeypatch.setitem(PACKAGED, "fake", dataclasses.replace(base, sha256=good))
    path = resolve_model("fake", s)
    assert path.read_bytes() == b"GGUF-part-one-part-two"
    sys.modules.pop("fakeparts1", None)


def test_default_model_is_the_1_5b_and_listed_as_default(run_cli, monkeypatch):
    from assistant.llm.registry import DEFAULT_MODEL
    from assistant.settings import Settings

    assert DEFAULT_MODEL == Settings.model == "qwen2.5-coder-1.5b"
    monkeypatch.delenv("ONBOARD_MODEL")  # tests pin smollm2-135m; here the real default
    code, out, _ = run_cli("models", "list", "--json")
    assert code == 0
    assert [r["name"] for r in json.loads(out) if r["default"]] == ["qwen2.5-coder-1.5b"]


def test_missing_default_falls_back_to_best_installed(monkeypatch):
    """A default that is not installed: the best installed packaged model answers, with a notice
    naming the install command; a model asked for by name is never swapped."""
    import dataclasses

    from assistant.llm import registry
    from assistant.settings import Settings

    ghost = dataclasses.replace(PACKAGED["qwen2.5-coder-1.5b"], name="ghost-9b", parts=(("no_such_pkg_xyz", "m.gguf"),))
    monkeypatch.setitem(registry.PACKAGED, "ghost-9b", ghost)  # last = strongest
    monkeypatch.setattr(registry, "DEFAULT_MODEL", "ghost-9b")
    name, notice = registry.chat_model_name(Settings(model="ghost-9b"))
    installed = [r.name for r in list_models(Settings()) if r.installed and r.source == "packaged"]
    assert name == installed[-1] and name != "ghost-9b"
    assert "ghost-9b" in notice and "make models-extra" in notice and "\n" not in notice
    assert registry.chat_model_name(Settings(model="smollm2-135m")) == ("smollm2-135m", None)


def test_open_model_without_a_name_uses_the_fallback_chat_answers_with(monkeypatch, capsys, onboard_home):
    """Commands that open "the chat model" (index --precompute-kv, eval-retrieval's hybrid) get
    the same fallback as chat, so their work is for the model that will answer."""
    import dataclasses

    from assistant.chat.session import open_model
    from assistant.llm import registry
    from assistant.settings import load_settings

    ghost = dataclasses.replace(PACKAGED["qwen2.5-coder-1.5b"], name="ghost-9b", parts=(("no_such_pkg_xyz", "m.gguf"),))
    monkeypatch.setattr(registry, "PACKAGED", {"smollm2-135m": PACKAGED["smollm2-135m"], "ghost-9b": ghost})
    monkeypatch.setattr(registry, "DEFAULT_MODEL", "ghost-9b")
    model = open_model(load_settings().replace(model="ghost-9b", n_ctx=512, n_threads=1))
    assert model.path == resolve_model("smollm2-135m", load_settings())
    assert "ghost-9b is not installed" in capsys.readouterr().err
