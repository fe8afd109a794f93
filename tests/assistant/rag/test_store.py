"""Index ownership (issue 20, defect 4): indexing another folder into an index name deleted every
chunk the run did not produce, so on a shared Chroma server one user erased another's index.
Also (defect 7) a failed first index leaves no empty index folder behind."""
from __future__ import annotations

from pathlib import Path

import pytest

from assistant.errors import OnboardError
from assistant.rag.index import index_path
from assistant.rag.store import index_dir, open_collection, read_manifest
from assistant.settings import Settings


def _folder(root: Path, name: str, docs: dict) -> Path:
    folder = root / name
    folder.mkdir()
    for file, text in docs.items():
        (folder / file).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def two_folders(tmp_path):
    a = _folder(tmp_path, "a", {"alpha.md": "# Alpha\n\nAlpha installs with `pip install alpha`.\n",
                               "alpha2.md": "# Alpha config\n\nAlpha reads alpha.toml.\n"})
    b = _folder(tmp_path, "b", {"beta.md": "# Beta\n\nBeta listens on port 9000.\n"})
    return a, b


def _paths(settings, name) -> list[str]:
    col = open_collection(settings, name, create=False)
    return sorted({m["path"] for m in col.get(include=["metadatas"])["metadatas"]})


def test_another_folder_is_refused_unless_add_or_replace(onboard_home, two_folders, run_cli):
    a, b = two_folders
    s = Settings(home=onboard_home, n_threads=2)
    index_path(s, a, name="shared", progress=False)
    with pytest.raises(OnboardError, match=r"holds .*/a, not .*/b: use --add .* --replace"):
        index_path(s, b, name="shared", progress=False)
    assert _paths(s, "shared") == ["alpha.md", "alpha2.md"]  # nothing was deleted

    stats = index_path(s, b, name="shared", progress=False, add=True)
    assert stats.deleted == 0 and _paths(s, "shared") == ["alpha.md", "alpha2.md", "beta.md"]
    assert sorted(read_manifest(s, "shared")["sources"]) == [str(a), str(b)]

    # re-indexing one source deletes only that folder's stale chunks, no flag needed
    (b / "beta.md").write_text("# Beta\n\nBeta now listens on port 9100.\n")
    stats = index_path(s, b, name="shared", progress=False)
    assert stats.deleted == 1 and stats.added == 1
    (a / "alpha2.md").unlink()
    index_path(s, a, name="shared", progress=False)
    assert _paths(s, "shared") == ["alpha.md", "beta.md"]

    # --replace says what it deletes
    code, _, err = run_cli("index", str(a), "--index", "shared", "--replace")
    assert code == 0, err
    assert f"deleted 1 files / 1 chunks of {b}" in err
    assert _paths(s, "shared") == ["alpha.md"]


def test_owner_recorded_in_the_collection_protects_a_shared_index(onboard_home, two_folders):
    """On a shared server the manifest is local to each user; the collection's record is not."""
    a, b = two_folders
    s = Settings(home=onboard_home, n_threads=2)
    index_path(s, a, name="lan", progress=False)
    (index_dir(s, "lan") / "manifest.json").unlink()  # as seen by another user of the server
    with pytest.raises(OnboardError, match="use --add"):
        index_path(s, b, name="lan", progress=False)
    index_path(s, b, name="lan", progress=False, add=True)
    assert _paths(s, "lan") == ["alpha.md", "alpha2.md", "beta.md"]


def test_failed_first_index_leaves_no_folder(onboard_home, tmp_path, run_cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "image.png").write_bytes(b"\x89PNG")
    code, _, err = run_cli("index", str(empty), "--index", "fresh")
    assert code != 0 and "no documents found" in err
    assert not index_dir(Settings(home=onboard_home), "fresh").exists()
