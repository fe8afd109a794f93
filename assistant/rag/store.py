"""Where an index lives: its Chroma collection (embedded on disk, or on a shared server) and its
manifest, the local record of which files and chunk ids the index holds.

Layout: $ONBOARD_HOME/indexes/NAME/chroma (embedded PersistentClient) and
$ONBOARD_HOME/indexes/NAME/manifest.json; with `settings.chroma_url` the chunks live in the
collection `onboard-NAME` on that server instead (the manifest stays local).
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from assistant.errors import OnboardError
from assistant.files import atomic_write_text
from assistant.rag.embedders import EMBED_FORMAT, EMBEDDER
from assistant.settings import Settings


# --- chroma ----------------------------------------------------------------------------------
def check_index_name(name: str) -> str:
    ok = name and len(name) <= 60 and name[0].isalnum() and all(c.isalnum() or c in "-_." for c in name)
    if not ok:
        raise OnboardError(f"invalid index name {name!r}: use letters, digits, '-', '_' and '.' (e.g. docs, nitro)")
    return name


def index_dir(settings: Settings, name: str) -> Path:
    return settings.indexes_dir / check_index_name(name)


def collection_name(name: str) -> str:
    return f"onboard-{name}"


def _client(settings: Settings, name: str, create: bool):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url if "://" in settings.chroma_url else f"http://{settings.chroma_url}")
        if not url.hostname:
            raise OnboardError(f"--chroma-url {settings.chroma_url!r} is not a URL like http://host:8000")
        try:
            return chromadb.HttpClient(host=url.hostname, port=url.port or (443 if url.scheme == "https" else 8000),
                                       ssl=url.scheme == "https", settings=chroma_settings)
        except Exception as e:  # connection refused, DNS, TLS: all mean "server not reachable"
            raise OnboardError(f"cannot reach the Chroma server at {settings.chroma_url} ({type(e).__name__}); "
                               "start it with: chroma run --path DIR, or drop --chroma-url") from None
    path = index_dir(settings, name) / "chroma"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def open_collection(settings: Settings, name: str, create: bool):
    client = _client(settings, name, create)
    if create:
        return client.get_or_create_collection(
            collection_name(name), embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"onboard_embedder": EMBEDDER, "onboard_format": EMBED_FORMAT})
    try:
        return client.get_collection(collection_name(name), embedding_function=None)
    except Exception:  # chromadb raises NotFoundError / ValueError depending on backend
        return None


# --- manifest --------------------------------------------------------------------------------
def manifest_path(settings: Settings, name: str) -> Path:
    return index_dir(settings, name) / "manifest.json"


def read_manifest(settings: Settings, name: str) -> dict:
    try:
        return json.loads(manifest_path(settings, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_manifest(settings: Settings, name: str, data: dict) -> None:
    atomic_write_text(manifest_path(settings, name), json.dumps(data, separators=(",", ":")))


def list_indexes(settings: Settings) -> list[str]:
    """Names of the local indexes under $ONBOARD_HOME/indexes (built or interrupted)."""
    root = settings.indexes_dir
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []


def index_exists(settings: Settings, name: str) -> bool:
    """True when NAME was built to completion (for a server index: its collection has chunks)."""
    if settings.chroma_url:
        col = open_collection(settings, name, create=False)
        return col is not None and col.count() > 0
    return bool(read_manifest(settings, name).get("complete"))
