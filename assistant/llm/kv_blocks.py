"""Reuse the KV cache of retrieved documents across prompts: fast time to first token for rag.

Why: a rag prompt carries four ~300-token chunks, ten times a plain prompt, and llama.cpp on a
laptop CPU reads prompts at a few hundred tokens/s, so reading the documents is most of the wait
before the first token. The same chunks come back for related questions, so each document's
keys and values are computed once and reused (the parallel context encoding of TurboRAG and
Block-Attention):

- a document *block* is encoded once after a fixed *canonical prefix* (system prompt + start of
  the documents list, as the prompt has it with no chat history), with the prompt set aside,
  and stored as a llama.cpp sequence state (memory LRU, optionally on disk);
- a later prompt loads the stored block into a scratch sequence, llama.cpp shifts its rotary
  positions (llama_memory_seq_add) to where it lands, and its cells are shared with the main
  sequence;
- documents follow each other with nothing in between (answer.document_blocks), so they are
  spliced in one run and one decode reads the rest — the question and the template's turn
  markers — attending to all of it: only document-to-document attention is approximated.

Accuracy with and without reuse is measured in docs/indexing.md; `kv_cache_mb = 0` turns it off.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from assistant.files import atomic_write_bytes

SCRATCH_SEQ = 1  # a stored block is loaded here, then shifted and shared into sequence 0


@dataclass
class Segment:
    """A run of prompt tokens; `block` ones are documents whose KV may come from the store."""

    tokens: list[int]
    block: bool = False


@contextlib.contextmanager
def two_sequence_context():
    """Make llama_cpp.Llama create a context with two sequences over one unified KV buffer.

    Llama() exposes neither n_seq_max nor kv_unified (it sets them only for embeddings), and a
    stored block is loaded into a second sequence whose cells are then shared with the first,
    which needs a unified cache. Scoped to the constructor call.
    """
    import llama_cpp.llama_cpp as lib

    original = lib.llama_context_default_params

    def params():
        p = original()
        p.n_seq_max = 2
        p.kv_unified = True
        return p

    lib.llama_context_default_params = params
    try:
        yield
    finally:
        lib.llama_context_default_params = original


class BlockStore:
    """Block KV states by key: an in-memory LRU, backed by a capped directory when given one."""

    def __init__(self, memory_mb: int = 512, disk_dir: Path | None = None, disk_mb: int = 0):
        self.memory_bytes = memory_mb * 2**20
        self.disk_dir, self.disk_bytes = disk_dir, disk_mb * 2**20
        self._disk_used: int | None = None
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._mem_size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def attach_disk(self, disk_dir: Path, disk_mb: int) -> None:
        if self.disk_dir != Path(disk_dir):
            self._disk_used = None
        self.disk_dir, self.disk_bytes = Path(disk_dir), disk_mb * 2**20

    def _path(self, key: str) -> Path | None:
        return self.disk_dir / key[:2] / f"{key}.kv" if self.disk_dir and self.disk_bytes > 0 else None

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._mem.get(key)
            if data is not None:
                self._mem.move_to_end(key)
                self.hits += 1
                return data
        path = self._path(key)
        if path is not None and path.is_file():
            try:
                data = path.read_bytes()
                os.utime(path)  # LRU order on disk is mtime order
            except OSError:
                data = None
            if data:
                self._remember(key, data)
                self.hits += 1
                return data
        self.misses += 1
        return None

    def put(self, key: str, data: bytes) -> None:
        self._remember(key, data)
        path = self._path(key)
        if path is None:
            return
        try:
            atomic_write_bytes(path, data)  # a killed writer never leaves a torn state behind
            self._trim_disk(len(data))
        except OSError:
            pass  # a cache that cannot write is only slower

    def _remember(self, key: str, data: bytes) -> None:
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return
            self._mem[key] = data
            self._mem_size += len(data)
            while self._mem_size > self.memory_bytes and len(self._mem) > 1:
                _, old = self._mem.popitem(last=False)
                self._mem_size -= len(old)

    def _trim_disk(self, added: int) -> None:
        """Drop the least recently used files once the directory is over its budget. The size is
        summed once and then kept up to date, so storing a whole index stays linear."""
        if self._disk_used is None:
            self._disk_used = sum(p.stat().st_size for p in self.disk_dir.glob("*/*.kv"))
        else:
            self._disk_used += added
        if self._disk_used <= self.disk_bytes:
            return
        files = sorted((p.stat().st_mtime, p.stat().st_size, p) for p in self.disk_dir.glob("*/*.kv"))
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= self.disk_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
        self._disk_used = total


class BlockPrefill:
    """Puts a segmented prompt into a Llama's KV cache, reusing stored document blocks.

    After `prefill`, the context holds the whole prompt in sequence 0 and live logits for its
    last token, and `llm.input_ids`/`n_tokens` describe it, so llama-cpp-python's own prefix
    matching (`create_completion`, `eval`) carries on from there.
    """

    def __init__(self, llm, store: BlockStore | None, model_id: str):
        import llama_cpp

        self.llm, self.store, self.lib = llm, store, llama_cpp
        self.mem = llama_cpp.llama_get_memory(llm.ctx)
        n_seq = llama_cpp.llama_n_seq_max(llm.ctx)
        # Without a store (reuse off) prefill only reuses the longest common prefix, as
        # llama-cpp-python does itself.
        self.enabled = store is not None and n_seq >= 2 and bool(llama_cpp.llama_memory_can_shift(self.mem))
        self.model_id = model_id
        self.spliced = 0  # blocks taken from the store in the last prefill
        self.prefix_loaded = False  # whether the last prefill loaded the canonical prefix
        self.encoded = 0  # blocks encoded (and stored) in the last prefill

    # --- public --------------------------------------------------------------------------
    def prefill(self, segments: Sequence[Segment], canonical: Sequence[int]) -> list[int]:
        llm = self.llm
        tokens = [t for s in segments for t in s.tokens]
        if not tokens:
            raise ValueError("empty prompt")
        self.spliced = self.encoded = 0
        cached = llm.input_ids[: llm.n_tokens].tolist()
        keep = 0
        for a, b in zip(cached, tokens[:-1]):  # the last token is always decoded: live logits
            if a != b:
                break
            keep += 1
        if self.enabled:  # a block is spliced whole or not at all: never keep a part of one
            start = 0
            for seg in segments:
                if seg.block and start < keep < start + len(seg.tokens):
                    keep = start
                start += len(seg.tokens)
        llm.n_tokens = keep
        llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        self.prefix_loaded = False
        if self.enabled and canonical and keep < len(canonical) == len(segments[0].tokens) \
                and segments[0].tokens == list(canonical):
            keep = self._load_prefix(list(canonical), keep)
        start = 0
        fresh: list[int] = []
        for i, seg in enumerate(segments):
            end = start + len(seg.tokens)
            if end > keep:
                part = seg.tokens[max(0, keep - start):]
                reusable = (seg.block and self.enabled and start >= keep and i < len(segments) - 1
                            and len(canonical) > 0)
                if reusable:
                    if fresh:
                        llm.eval(fresh)
                        fresh = []
                    if not self._splice(seg.tokens, list(canonical)):
                        llm.eval(seg.tokens)
                else:
                    fresh.extend(part)
            start = end
        llm.eval(fresh)  # never empty: the last segment is always decoded
        return tokens

    def warm(self, block: list[int], canonical: list[int]) -> bool:
        """Encode and store `block` unless the store has it; True when it was encoded."""
        if not self.enabled or self.store.get(self._key(canonical, block)) is not None:
            return False
        data = self._encode(block, canonical)
        if data is not None:
            self.store.put(self._key(canonical, block), data)
        return data is not None

    # --- blocks --------------------------------------------------------------------------
    def _load_prefix(self, canonical: list[int], keep: int) -> int:
        """Put the stored canonical prefix (system prompt + start of the documents, which
        _encode stores once) in place of the first `keep` tokens: a new process, or one that
        just answered without documents, skips reading it. Exact: the same tokens at the same
        positions. Returns how many tokens the cache now keeps."""
        data = self.store.get(self._key(canonical, []))
        if data is None:
            return keep
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        if not self._load(data, 0):
            self.lib.llama_memory_seq_rm(self.mem, -1, -1, -1)  # a failed load may leave cells
            self.llm.n_tokens = 0
            return 0
        n = len(canonical)
        self.llm.input_ids[:n] = canonical
        self.llm.n_tokens = n
        self.llm._requires_eval = True  # logits are stale until the next decode
        self.prefix_loaded = True
        return n

    def _key(self, canonical: list[int], block: list[int]) -> str:
        h = hashlib.sha256(f"{self.model_id}|{self.lib.__version__}|".encode())
        h.update(repr(canonical).encode() + b"|" + repr(block).encode())
        return h.hexdigest()

    def _splice(self, block: list[int], canonical: list[int]) -> bool:
        """Put `block` at position llm.n_tokens of sequence 0; False when it could not."""
        lib, llm, pos = self.lib, self.llm, self.llm.n_tokens
        key = self._key(canonical, block)
        data = self.store.get(key)
        try:
            if data is None or not self._load(data, SCRATCH_SEQ):
                data = self._encode(block, canonical)
                if data is None:
                    return False
                self.store.put(key, data)
                self.encoded += 1
                if not self._load(data, SCRATCH_SEQ):
                    return False
            else:
                self.spliced += 1
            # The scratch sequence holds the block at positions after the canonical prefix;
            # no decode runs while it coexists with sequence 0 (see _encode).
            delta = pos - len(canonical)
            if delta:
                lib.llama_memory_seq_add(self.mem, SCRATCH_SEQ, -1, -1, delta)
            lib.llama_memory_seq_cp(self.mem, SCRATCH_SEQ, 0, -1, -1)
        finally:
            lib.llama_memory_seq_rm(self.mem, SCRATCH_SEQ, -1, -1)
        llm.input_ids[pos: pos + len(block)] = block
        llm.n_tokens = pos + len(block)
        llm._requires_eval = True  # logits are stale until the next decode
        return True

    def _encode(self, block: list[int], canonical: list[int]) -> bytes | None:
        """Encode `block` after the canonical prefix; its state bytes (positions after the prefix).

        llama.cpp 0.3.36 computes slightly different activations when a second sequence has
        cells in the cache during a decode (measured: up to 0.9 in a log-prob, whatever the
        other cells hold), so the prompt so far is set aside and the block is encoded alone.
        """
        lib, ctx_seq = self.lib, 0
        saved = self._save(ctx_seq) if self.llm.n_tokens else None
        key = self._key(canonical, [])
        try:
            lib.llama_memory_clear(self.mem, True)
            prefix_state = self.store.get(key)
            if prefix_state is None or not self._load(prefix_state, ctx_seq):
                lib.llama_memory_clear(self.mem, True)
                if not self._decode(canonical, 0):
                    return None
                self.store.put(key, self._save(ctx_seq))
            if not self._decode(block, len(canonical)):
                return None
            lib.llama_memory_seq_rm(self.mem, ctx_seq, 0, len(canonical))
            return self._save(ctx_seq)
        finally:
            lib.llama_memory_clear(self.mem, True)
            if saved is not None and not self._load(saved, ctx_seq):
                raise RuntimeError("could not restore the prompt's KV state")

    def _decode(self, tokens: list[int], pos0: int) -> bool:
        lib, n_batch = self.lib, self.llm.n_batch
        batch = lib.llama_batch_init(n_batch, 0, 1)
        try:
            for i in range(0, len(tokens), n_batch):
                part = tokens[i: i + n_batch]
                batch.n_tokens = len(part)
                for j, tok in enumerate(part):
                    batch.token[j] = tok
                    batch.pos[j] = pos0 + i + j
                    batch.n_seq_id[j] = 1
                    batch.seq_id[j][0] = 0
                    batch.logits[j] = False
                if lib.llama_decode(self.llm.ctx, batch) != 0:
                    return False  # no room in the KV cache: the caller decodes it in place
            return True
        finally:
            lib.llama_batch_free(batch)

    def _save(self, seq: int) -> bytes:
        lib, ctx = self.lib, self.llm.ctx
        size = lib.llama_state_seq_get_size(ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        n = lib.llama_state_seq_get_data(ctx, buf, size, seq)
        return ctypes.string_at(buf, n)

    def _load(self, data: bytes, seq: int) -> bool:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        return self.lib.llama_state_seq_set_data(self.llm.ctx, buf, len(data), seq) > 0
