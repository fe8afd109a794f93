"""One settings object for every command.

Precedence (highest first): explicit overrides > ONBOARD_* environment variables >
$ONBOARD_HOME/config.toml > defaults. ONBOARD_HOME holds indexes, caches, feedback and built
models, so tests and users can isolate all state by pointing it somewhere else.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from assistant.errors import OnboardError


def _default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("onboard", appauthor=False))


def _default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class Settings:
    home: Path = field(default_factory=_default_home)
    model: str = "smollm2-135m"  # default chat model (registry name or GGUF path)
    index: str = "docs"  # default index name
    mode: str = "rag"  # default answer mode for chat
    chroma_url: str | None = None  # shared Chroma server instead of the embedded one
    n_ctx: int = 4096
    n_threads: int = field(default_factory=_default_threads)
    seed: int = 0
    temperature: float = 0.2
    max_tokens: int = 512
    chunk_tokens: int = 300
    chunk_overlap: int = 30
    top_k: int = 4
    # Document KV reuse (assistant/llm/kv_blocks.py): disk budget for stored document blocks under
    # cache/kv; 0 turns reuse off (every prompt reads its documents again).
    kv_cache_mb: int = 2048

    # --- derived locations -------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def indexes_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def feedback_db(self) -> Path:
        return self.home / "feedback.sqlite"

    def ensure_home(self) -> Path:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OnboardError(f"cannot create ONBOARD_HOME {self.home}: {e.strerror}") from None
        return self.home

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _coerce(name: str, kind, raw):
    try:
        if kind in ("int", int):
            return int(raw)
        if kind in ("float", float):
            return float(raw)
        if kind in ("Path", Path):
            return Path(raw).expanduser()
        return str(raw)
    except (TypeError, ValueError):
        raise OnboardError(f"setting {name}: cannot read {raw!r} as {kind}") from None


def load_settings(**overrides) -> Settings:
    """Build Settings from env, $ONBOARD_HOME/config.toml and overrides."""
    env_home = os.environ.get("ONBOARD_HOME")
    home = Path(env_home).expanduser() if env_home else _default_home()
    values: dict = {"home": home}
    config = home / "config.toml"
    if config.is_file():
        try:
            data = tomllib.loads(config.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise OnboardError(f"{config}: not valid TOML ({e})") from None
        values.update(data.get("onboard", data))
    types = {f.name: f.type for f in fields(Settings)}
    for f in fields(Settings):
        raw = os.environ.get("ONBOARD_" + f.name.upper())
        if raw is not None and f.name != "home":
            values[f.name] = raw
    unknown = set(values) - set(types)
    if unknown:
        raise OnboardError(f"unknown setting(s) in {config}: {', '.join(sorted(unknown))}")
    for name, raw in list(values.items()):
        kind = types[name].replace(" | None", "")
        values[name] = None if raw in (None, "") and "None" in types[name] else _coerce(name, kind, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
