"""How large a context a model may get: its trained context and the memory its KV cache needs.

llama.cpp allocates the whole KV cache for n_ctx tokens up front and trusts the number it is
given (a negative or huge n_ctx grew a process to 13 GB in under a minute), so the check runs
before the model loads, from the GGUF header alone: a small reader that stops once it has the
few keys it needs, instead of loading the model (llama.cpp) or walking the whole vocabulary
(gguf's reader).
"""
from __future__ import annotations

import struct
from pathlib import Path

from assistant.errors import OnboardError
from assistant.settings import check_setting

# GGUF value types (gguf spec): fixed sizes in bytes; 8 = string, 9 = array.
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_WANTED = ("context_length", "block_count", "embedding_length", "attention.head_count",
           "attention.head_count_kv", "attention.key_length", "attention.value_length")
KV_BYTES_PER_VALUE = 2  # llama.cpp's default KV cache type is f16


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("<Q")
        text = self.data[self.pos:self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, kind: int):
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:  # arrays (the vocabulary) are skipped, not decoded
            item, count = self.take("<I"), self.take("<Q")
            if item in _SIZES:
                self.pos += _SIZES[item] * count
            else:
                for _ in range(count):
                    self.value(item)
            return None
        return self.take(_FORMATS[kind])


def gguf_header(path: Path) -> dict:
    """Architecture and the `<arch>.*` size keys of a GGUF (keys without the arch prefix)."""
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            r = _Reader(data)
            if r.take("<4s") != b"GGUF":
                raise OnboardError(f"{path} is not a GGUF model file (bad magic bytes)")
            r.take("<I")  # version
            r.take("<Q")  # tensor count
            out: dict = {}
            for _ in range(r.take("<Q")):
                key, kind = r.string(), r.take("<I")
                value = r.value(kind)
                if key == "general.architecture":
                    out["arch"] = value
                elif "." in key and key.split(".", 1)[1] in _WANTED:
                    out[key] = value
                arch = out.get("arch")
                if arch and all(f"{arch}.{k}" in out for k in _WANTED[:5]):
                    break
    except (OSError, ValueError, struct.error, KeyError) as e:
        raise OnboardError(f"cannot read the header of {path}: {e} (truncated or unsupported GGUF?)") from None
    arch = out.get("arch", "")
    return {"arch": arch, **{k: int(out[f"{arch}.{k}"]) for k in _WANTED if f"{arch}.{k}" in out}}


def kv_bytes_per_token(header: dict) -> int | None:
    """Bytes of K and V cache one token of context takes, or None when the header lacks sizes."""
    try:
        heads = header["attention.head_count"]
        kv_heads = header.get("attention.head_count_kv", heads)
        key_dim = header.get("attention.key_length", header["embedding_length"] // heads)
        value_dim = header.get("attention.value_length", key_dim)
        return header["block_count"] * kv_heads * (key_dim + value_dim) * KV_BYTES_PER_VALUE
    except (KeyError, ZeroDivisionError):
        return None


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (memory the kernel can give without swapping), if known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_context(path: Path, n_ctx: int) -> None:
    """One clear OnboardError unless `n_ctx` fits the model's trained context and free memory."""
    check_setting("n_ctx", n_ctx, "int")
    header = gguf_header(path)
    trained = header.get("context_length")
    if trained and n_ctx > trained:
        raise OnboardError(f"n_ctx {n_ctx} is larger than the {trained}-token context {path.name} was "
                           f"trained for; use --ctx {trained} or less")
    per_token, free = kv_bytes_per_token(header), available_memory_bytes()
    if per_token and free and per_token * n_ctx > free:
        fits = free // per_token // 256 * 256
        raise OnboardError(f"n_ctx {n_ctx} needs about {per_token * n_ctx / 2**30:.1f} GiB of KV cache for "
                           f"{path.name} but only {free / 2**30:.1f} GiB of memory is available; "
                           f"use --ctx {fits} or less")
