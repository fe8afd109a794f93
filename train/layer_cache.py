"""Frozen-layer cache: with LoRA on the top N layers only (`lora_layers`), the layers below them
never change, so their output for a packed training row is the same in every epoch. The first
time a row is seen, those layers run as usual and their output is kept; from the second epoch on
the step starts at the first adapted layer.

    with frozen_layer_cache(trainer.model) as cache:   # around trainer.train()
        trainer.train()
    cache.hits, cache.misses, cache.bytes

Exact, not an approximation: the cached tensor is the one the same layers computed for the same
input (embeddings of the same tokens, same positions), under the same autocast. On 2 cores,
Qwen2.5-Coder-0.5B with the top 8 of 24 layers adapted, a step of the second epoch skips the
bottom 16 layers' forward pass, about a third of the step (bench/bench_layer_cache.py measures it).
The cost is memory: hidden size x 4 bytes per token of the training data (0.5B: 3.5 KB a token,
~1 GB for Nitro's reading rows), bounded by `max_bytes`; rows past it are computed as before.

It applies to decoder stacks that call `model.layers[i](hidden_states, **kw)` in order (Llama,
Qwen2, Mistral and their kin), whose cached layers have no trainable weight, no dropout and one
attention type; anything else trains exactly as without it (the context yields a disabled cache).
The sft stage leaves it off under gradient checkpointing (CUDA): checkpointed LoRA layers need an
input that carries a gradient, and a cached tensor does not.
"""
from __future__ import annotations

import contextlib
import hashlib

DEFAULT_MAX_BYTES = 8 << 30


class FrozenLayerCache:
    """Outputs of the frozen bottom layers, per training example, keyed by a hash of its input."""

    def __init__(self, layers: list, max_bytes: int = DEFAULT_MAX_BYTES):
        self.layers = layers  # a plain list: not registered as a submodule, names stay unchanged
        self.max_bytes = max_bytes
        self.store: dict[bytes, object] = {}
        self.bytes = 0
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return bool(self.layers)

    @staticmethod
    def key(*tensors) -> bytes:
        import torch

        h = hashlib.blake2b(digest_size=16)
        for t in tensors:
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes())
        return h.digest()

    @staticmethod
    def spans(hidden_states, kwargs: dict) -> list[tuple[int, int]]:
        """The examples of a padding-free packed batch (one row; positions restart at 0 for each),
        else the whole batch as one piece. Packed examples never attend to each other, so each
        example's output depends on its own tokens only, whichever batch the sampler puts it in."""
        positions = kwargs.get("position_ids")
        length = hidden_states.shape[1]
        if positions is None or hidden_states.shape[0] != 1 or positions.shape[-1] != length:
            return [(0, length)]
        starts = (positions.reshape(-1) == 0).nonzero().reshape(-1).tolist()
        if not starts or starts[0] != 0:
            return [(0, length)]
        return list(zip(starts, starts[1:] + [length]))

    def run(self, hidden_states, kwargs: dict):
        import torch

        pieces = self.spans(hidden_states, kwargs)
        if len(pieces) > 1:  # a packed example: its tokens say it all (positions start at 0)
            keys = [self.key(hidden_states[:, s:e]) for s, e in pieces]
        else:  # a whole batch: padding and positions matter too
            extra = [kwargs[k] for k in ("position_ids", "attention_mask") if torch.is_tensor(kwargs.get(k))]
            keys = [self.key(hidden_states, *extra)]
        found = [self.store.get(k) for k in keys]
        if all(f is not None for f in found):
            self.hits += len(found)
            return found[0] if len(found) == 1 else torch.cat(found, dim=1)
        with torch.no_grad():
            out = hidden_states
            for layer in self.layers:
                out = layer(out, **kwargs)
                out = out[0] if isinstance(out, tuple) else out
        for k, (s, e), f in zip(keys, pieces, found):
            if f is not None:
                self.hits += 1
                continue
            self.misses += 1
            piece = out[:, s:e].clone() if len(pieces) > 1 else out
            size = piece.numel() * piece.element_size()
            if self.bytes + size <= self.max_bytes:
                self.store[k] = piece
                self.bytes += size
        return out

    def summary(self) -> dict:
        return {"cached_layers": len(self.layers), "hits": self.hits, "misses": self.misses,
                "megabytes": round(self.bytes / 2**20, 1)}


def _decoder_stack(model):
    """(the decoder model, its `layers` ModuleList) of a causal LM (through a peft wrapper), or
    (None, None)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, "model", None)
    layers = getattr(inner, "layers", None)
    import torch

    return (inner, layers) if isinstance(layers, torch.nn.ModuleList) else (None, None)


def frozen_prefix_length(model) -> int:
    """How many bottom layers can be cached: those below the first with a trainable weight, when
    the embeddings are frozen, nothing drops out and the cached layers share one attention type."""
    inner, layers = _decoder_stack(model)
    if layers is None or any(p.requires_grad for p in inner.embed_tokens.parameters()):
        return 0
    config = inner.config
    if getattr(config, "attention_dropout", 0.0) or getattr(config, "hidden_dropout", 0.0):
        return 0
    n = 0
    for layer in layers:
        if any(p.requires_grad for p in layer.parameters()):
            break
        n += 1
    if n == len(layers):
        return 0  # nothing trains inside the stack (e.g. a head-only run): leave it alone
    types = getattr(config, "layer_types", None)
    if types and len(set(types[:n])) > 1:
        return 0
    return n


@contextlib.contextmanager
def frozen_layer_cache(model, max_bytes: int = DEFAULT_MAX_BYTES, enabled: bool = True):
    """Route the frozen bottom layers of `model` through a FrozenLayerCache for the duration;
    the original layers are put back on exit (saving and merging see the stock model)."""
    import torch

    n = frozen_prefix_length(model) if enabled else 0
    inner, layers = _decoder_stack(model)
    if n == 0:
        yield FrozenLayerCache([], max_bytes)
        return
    original = list(layers)
    cache = FrozenLayerCache(original[:n], max_bytes)

    class CachedBottom(torch.nn.Module):
        def forward(self, hidden_states, *args, **kwargs):
            return cache.run(hidden_states, kwargs)

    class Skip(torch.nn.Module):
        def forward(self, hidden_states, *args, **kwargs):
            return hidden_states

    inner.layers = torch.nn.ModuleList([CachedBottom()] + [Skip() for _ in range(n - 1)] + original[n:])
    try:
        yield cache
    finally:
        inner.layers = torch.nn.ModuleList(original)
