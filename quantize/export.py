"""Export a model for Ollama or Jan: a folder with the GGUF and the file each app reads.

    onboard export ollama nitro-135m -o ~/exports     # then: ollama create nitro-135m -f ~/exports/nitro-135m/Modelfile
    onboard export jan nitro-135m -o ~/jan/models      # Jan picks up ~/jan/models/nitro-135m/model.json

The chat template and stop tokens come from the GGUF's own metadata (tokenizer.chat_template):
the family (ChatML as in SmolLM2/Qwen, Llama 3) is recognised and written in each app's syntax, Go template
for Ollama, a `{system_message}` / `{prompt}` string for Jan. Unknown families are refused rather
than guessed, because a wrong template makes a model answer badly without any error.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from assistant.chat.prompts import SYSTEM_PLAIN
from assistant.errors import OnboardError
from assistant.files import atomic_write_text
from assistant.llm.registry import PACKAGED, built_models, resolve_model


@dataclass(frozen=True)
class TemplateFamily:
    name: str
    marker: str  # substring of the jinja chat template that identifies the family
    ollama: str  # Go template (Ollama >= 0.3 .Messages form)
    jan: str  # Jan/Nitro prompt_template
    stops: tuple[str, ...]


FAMILIES = (
    TemplateFamily(
        name="chatml", marker="<|im_start|>",
        ollama=('{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
                '{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}\n'
                '{{ .Content }}<|im_end|>\n{{ end }}{{- end }}<|im_start|>assistant\n'),
        jan="<|im_start|>system\n{system_message}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
        stops=("<|im_end|>", "<|im_start|>"),
    ),
    TemplateFamily(
        name="llama3", marker="<|start_header_id|>",
        ollama=('{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}'
                '{{- range .Messages }}{{- if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
                '{{ .Content }}<|eot_id|>{{ end }}{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n'),
        jan=("<|start_header_id|>system<|end_header_id|>\n\n{system_message}<|eot_id|><|start_header_id|>user"
             "<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
        stops=("<|eot_id|>", "<|start_header_id|>"),
    ),
)
TARGETS = ("ollama", "jan")


def detect_family(chat_template: str | None) -> TemplateFamily:
    if not chat_template:
        raise OnboardError("the model has no chat template in its GGUF metadata; it is not a chat model "
                           "(export an instruct/chat model)")
    for fam in FAMILIES:
        if fam.marker in chat_template:
            return fam
    raise OnboardError("unrecognised chat template family (known: " + ", ".join(f.name for f in FAMILIES)
                       + "); write the Modelfile TEMPLATE by hand from the GGUF's tokenizer.chat_template")


def _model_facts(name: str, settings) -> tuple[Path, dict]:
    """(GGUF path, card-like facts) for a registry name or a GGUF path."""
    path = resolve_model(name, settings)
    card = next((b for b in built_models(settings) if b["name"] == name), None)
    if card is None and name in PACKAGED:
        m = PACKAGED[name]
        card = {"description": m.description, "license": m.license, "params": m.params, "quant": m.quant}
    return path, dict(card or {})


def _place_gguf(src: Path, dst: Path) -> None:
    """Hard link when possible (same disk, no extra space), else copy; always via a temp name."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _export_name(name: str) -> str:
    return Path(name).stem if name.endswith(".gguf") else name


def _gguf_header(path: Path) -> dict:
    from quantize.verify import gguf_metadata

    return gguf_metadata(path)


def _prepare_export(name: str, out_dir: Path, settings):
    """What both exports share: OUT/ID/ID.gguf in place, the chat family, stop tokens, context."""
    path, card = _model_facts(name, settings)
    meta = _gguf_header(path)
    fam = detect_family(meta.get("tokenizer.chat_template"))
    card.setdefault("license", meta.get("general.license", ""))
    model_id = _export_name(name)
    folder = Path(out_dir).expanduser() / model_id
    folder.mkdir(parents=True, exist_ok=True)
    _place_gguf(path, folder / f"{model_id}.gguf")
    stops = list(dict.fromkeys([*fam.stops, *([meta["eos_token"]] if meta.get("eos_token") else [])]))
    n_ctx = min(settings.n_ctx, int(meta.get("context_length") or settings.n_ctx))
    return model_id, folder, card, fam, stops, n_ctx


def export_ollama(name: str, out_dir: Path, settings, system: str = SYSTEM_PLAIN) -> Path:
    """Write OUT/NAME/{NAME.gguf, Modelfile}; returns the folder."""
    model_id, folder, card, fam, stops, n_ctx = _prepare_export(name, out_dir, settings)
    lines = [
        f"# {card.get('description') or model_id + ', exported by onboard'}",
        f"# Create it in Ollama:  ollama create {model_id} -f Modelfile   then:  ollama run {model_id}",
        f"FROM ./{model_id}.gguf",
        f'TEMPLATE """{fam.ollama}"""',
        f'SYSTEM """{system}"""',
        *[f'PARAMETER stop "{s}"' for s in stops],
        f"PARAMETER temperature {settings.temperature}",
        f"PARAMETER num_ctx {n_ctx}",
    ]
    if card.get("license"):
        lines.append(f'LICENSE """{card["license"]}"""')
    atomic_write_text(folder / "Modelfile", "\n".join(lines) + "\n")
    return folder


def export_jan(name: str, out_dir: Path, settings, system: str = SYSTEM_PLAIN) -> Path:
    """Write OUT/NAME/{NAME.gguf, model.json} in the layout of Jan's models folder; returns the folder."""
    model_id, folder, card, fam, stops, n_ctx = _prepare_export(name, out_dir, settings)
    gguf_name = f"{model_id}.gguf"
    model_json = {
        "sources": [{"filename": gguf_name, "url": str((folder / gguf_name).resolve())}],
        "id": model_id,
        "object": "model",
        "name": model_id,
        "version": "1.0",
        "description": card.get("description", f"{model_id}, exported by onboard"),
        "format": "gguf",
        "settings": {"ctx_len": n_ctx, "prompt_template": fam.jan, "llama_model_path": gguf_name, "ngl": 0,
                     "system_prompt": system},
        "parameters": {"temperature": settings.temperature, "top_p": 0.95, "stream": True,
                       "max_tokens": settings.max_tokens, "stop": stops, "frequency_penalty": 0,
                       "presence_penalty": 0},
        "metadata": {"author": "onboard", "tags": ["onboard", card.get("params", ""), card.get("quant", "")],
                     "size": (folder / gguf_name).stat().st_size, "license": card.get("license", "")},
        "engine": "nitro",
    }
    model_json["metadata"]["tags"] = [t for t in model_json["metadata"]["tags"] if t]
    atomic_write_text(folder / "model.json", json.dumps(model_json, indent=2) + "\n")
    return folder


def export_model(target: str, name: str, out_dir: Path | None, settings) -> Path:
    if target not in TARGETS:
        raise OnboardError(f"unknown export target {target!r}; choose one of: {', '.join(TARGETS)}")
    out_dir = Path(out_dir) if out_dir else settings.home / "exports" / target
    return (export_ollama if target == "ollama" else export_jan)(name, out_dir, settings)
