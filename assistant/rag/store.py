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


# --- ownership: which folders an index was built from ------------------------------------------
# Indexing a folder into an existing index name used to delete every chunk that run did not
# produce: on a shared Chroma server, one user's `onboard index` erased another's index. Now an
# index remembers its sources (the manifest's "sources", and the collection's metadata, which a
# shared server keeps for everyone); another folder is refused unless the user says --add (keep
# both; a re-index deletes only that folder's stale chunks) or --replace (delete the others).
SOURCES_KEY = "onboard_sources"
UNRECORDED = "(a folder with no record)"


def manifest_sources(manifest: dict) -> dict:
    """{source folder: {"files": {rel path: entry}}} of a manifest (older ones had one source)."""
    if isinstance(manifest.get("sources"), dict):
        return manifest["sources"]
    if manifest.get("source"):
        return {manifest["source"]: {"files": manifest.get("files") or {}}}
    return {}


def collection_sources(col) -> list[str]:
    try:
        return list(json.loads((col.metadata or {}).get(SOURCES_KEY) or "[]"))
    except (TypeError, ValueError):
        return []


def record_sources(col, sources) -> None:
    """Keep the source list in the collection too (a shared server's users see each other's)."""
    listed = json.dumps(sorted(sources))
    if (col.metadata or {}).get(SOURCES_KEY) != listed:
        col.modify(metadata={**(col.metadata or {}), SOURCES_KEY: listed})


def index_folder_exists(settings: Settings, name: str) -> bool:
    """False before an embedded index's first build: nothing is created until its folder turned
    out to hold documents, so a failed first index leaves no empty Chroma folder behind."""
    return bool(settings.chroma_url) or index_dir(settings, name).exists()


def _ids(sources: dict) -> set:
    return {i for s in sources.values() for entry in (s.get("files") or {}).values() for i in entry.get("ids", ())}


class Ownership:
    """What indexing `source` into an index may touch, given the sources it already has."""

    def __init__(self, source: str, sources: dict, kept: dict, dropped: dict, unknown: list[str], add: bool):
        self.source = source
        self.own_files: dict = (sources.get(source) or {}).get("files") or {}  # this folder's last run
        self.kept, self.dropped = kept, dropped  # other folders (with their manifest entries)
        # folders known only from the collection (another machine's manifest): kept with --add,
        # deleted with --replace; their chunk ids are unknown here, so nothing but ours is touched
        self.unknown, self.add = unknown, add

    @property
    def sole(self) -> bool:
        return not self.kept and not (self.add and self.unknown)

    @property
    def all_sources(self) -> list[str]:
        """Folders the index holds after this run (for the collection's record)."""
        return sorted({*self.kept, *(self.unknown if self.add else ()), self.source} - {UNRECORDED})

    def stale(self, existing: set, expected: set) -> list[str]:
        """Ids to delete: with no other source kept, everything this run did not produce (which
        also clears leftovers of killed runs); else only this folder's own old chunks."""
        if self.sole:
            return sorted(existing - expected)
        own = {i for entry in self.own_files.values() for i in entry.get("ids", ())}
        return sorted((own & existing) - expected - _ids(self.kept))

    def sources(self, files: dict) -> dict:
        return {**self.kept, self.source: {"files": files}}

    def replaced(self, existing: set) -> dict:
        """What --replace deletes: the other folders, their file and chunk counts."""
        own = {i for entry in self.own_files.values() for i in entry.get("ids", ())}
        return {"sources": sorted([*self.dropped, *self.unknown]),
                "files": sum(len(s.get("files") or {}) for s in self.dropped.values()),
                "chunks": len(existing - own)}


def claim_sources(name: str, manifest: dict, col, source: str, add: bool = False,
                  replace: bool = False, existing: set = frozenset()) -> Ownership:
    """Ownership of index NAME for `source`, or one clear OnboardError when another folder's
    chunks would be deleted without --add or --replace."""
    if add and replace:
        raise OnboardError("--add and --replace contradict each other; pick one")
    sources = manifest_sources(manifest)
    others = {s: v for s, v in sources.items() if s != source}
    unknown = [s for s in (collection_sources(col) if col is not None else []) if s != source and s not in sources]
    if not sources and not unknown and existing:
        unknown = [UNRECORDED]  # chunks with no recorded owner: someone else's
    known = source in sources or (col is not None and source in collection_sources(col))
    if (others or unknown) and not known and not (add or replace):  # a folder the index does not hold yet
        first = sorted([*others, *unknown])[0]
        more = len(others) + len(unknown) - 1
        raise OnboardError(f"index {name!r} holds {first}" + (f" and {more} more folder(s)" if more else "")
                           + f", not {source}: use --add to keep both, --replace to delete what it holds, "
                           f"or another --index name")
    if replace:
        return Ownership(source, sources, {}, others, unknown, add=False)
    return Ownership(source, sources, others, {}, unknown, add=True)
