"""Fixtures for the docs-index tests: one Nitro index shared by the whole session.

`onboard_home` is private per test, so the shared index lives in its own home built once under
tmp_path_factory; tests point settings (or ONBOARD_HOME, for the CLI) at it explicitly and must
not modify it.
"""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def nitro_index_home(tmp_path_factory, nitro_docs) -> Path:
    from assistant.rag.index import index_path
    from assistant.settings import Settings

    home = tmp_path_factory.mktemp("nitro_index_home")
    index_path(Settings(home=home, n_threads=2), nitro_docs, name="nitro", progress=False)
    return home


@pytest.fixture
def nitro_settings(nitro_index_home):
    from assistant.settings import load_settings

    return load_settings(home=nitro_index_home, n_threads=2)


@pytest.fixture
def nitro_home_env(nitro_index_home, monkeypatch) -> Path:
    """ONBOARD_HOME pointing at the shared Nitro index home (for in-process CLI runs)."""
    monkeypatch.setenv("ONBOARD_HOME", str(nitro_index_home))
    return nitro_index_home
