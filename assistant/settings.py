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


MIN_CTX = 256  # below this no prompt with a document fits; llama.cpp also pads to 256

# Allowed range of each numeric setting, (lowest, highest or None), inclusive. Every source of
# settings - command-line options, ONBOARD_* variables, config.toml, imported bundles - ends in
# Settings(...), whose __post_init__ checks this table, so a range is written once, here. A new
# numeric setting adds one line; a setting without a line still gets its type checked.
LIMITS: dict[str, tuple[float, float | None]] = {
    "n_ctx": (MIN_CTX, 1 << 24),  # also capped per model at load time (llm/chat_model.py)
    "n_threads": (1, 1024),
    "seed": (0, 2**32 - 1),
    "temperature": (0.0, 5.0),
    "max_tokens": (1, 1 << 24),
    "chunk_tokens": (16, 100_000),
    "chunk_overlap": (0, 100_000),
    "top_k": (1, 1000),
    "kv_cache_mb": (0, 1 << 24),
    "whole_files_tokens": (0, 1 << 24),  # 0: off
    "repeat_penalty": (0.1, 10.0),  # 1.0: off
    "frequency_penalty": (-2.0, 2.0),  # OpenAI's range; 0.0: off
    "presence_penalty": (-2.0, 2.0),
    "loop_ngram": (0, 4096),  # 0: loop detector off
    "loop_repeats": (1, 1000),
}


def check_setting(name: str, value, kind: str):
    """`value` as the setting `name` of type `kind` ("int"/"float"), or one clear OnboardError.

    Whole numbers only where a whole number is meant: 3.7 (or True) for n_ctx is an error, not 3."""
    if kind == "int":
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise OnboardError(f"setting {name} must be a whole number, got {value!r}")
    elif kind == "float":
        try:
            value = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or value != value:  # NaN compares unequal to itself
            raise OnboardError(f"setting {name} must be a number")
    else:
        return value
    low, high = LIMITS.get(name, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise OnboardError(f"setting {name} must be {span}, got {value}")
    return value


@dataclass
class Settings:
    home: Path = field(default_factory=_default_home)
    # Default chat model (registry name or GGUF path): the best packaged model that runs on a laptop
    # CPU (docs/models.md); when it is not installed, the best installed one answers (llm/registry.py).
    model: str = "qwen2.5-coder-1.5b"
    index: str = "docs"  # default index name
    mode: str = "rag"  # default answer mode for chat
    chroma_url: str | None = None  # shared Chroma server instead of the embedded one
    n_ctx: int = 4096
    n_threads: int = field(default_factory=_default_threads)
    seed: int = 0
    temperature: float = 0.2
    max_tokens: int = 512
    # Answers that loop (assistant/chat/loops.py): llama.cpp penalties on tokens repeated within
    # the last 64 generated (1.0 / 0.0: off), and the detector that ends an answer once an
    # n-token run (loop_ngram; 0: off) occurs loop_repeats times. Measured by bench/loops.py.
    repeat_penalty: float = 1.1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    loop_ngram: int = 8
    loop_repeats: int = 3
    chunk_tokens: int = 300
    chunk_overlap: int = 30
    top_k: int = 4
    # Small corpora whole (assistant/chat/whole_files.py): when the files the top_k chunks come from
    # fit in this many prompt tokens (and in the context), the prompt gets those files whole, else
    # their whole sections, else the chunks; 0: always chunks. Measured in docs/chat.md.
    whole_files_tokens: int = 0
    # Document KV reuse (assistant/llm/kv_blocks.py): disk budget for stored document blocks under
    # cache/kv; 0 turns reuse off (every prompt reads its documents again).
    kv_cache_mb: int = 2048
    retrieval: str = "fused"  # vector | bm25 | fused (reciprocal-rank fusion), see docs/indexing.md

    def __post_init__(self):
        for f in fields(self):
            kind = str(f.type).replace(" | None", "")
            if kind in ("int", "float") and not (getattr(self, f.name) is None and "None" in str(f.type)):
                setattr(self, f.name, check_setting(f.name, getattr(self, f.name), kind))

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
    if kind in ("int", "float"):
        return check_setting(name, raw, kind)
    try:
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
        source = f"ONBOARD_{name.upper()}" if f"ONBOARD_{name.upper()}" in os.environ else config
        try:
            values[name] = None if raw in (None, "") and "None" in types[name] else _coerce(name, kind, raw)
        except OnboardError as e:
            raise OnboardError(f"{source}: {e}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
