"""Ollama and Jan exports: the templates they carry render exactly what the model's own chat
template renders (checked with a small Go-template evaluator and jinja2), stops and files are right."""
from __future__ import annotations

import json
import re
import shlex

import jinja2
import pytest

from assistant.errors import OnboardError
from assistant.files import sha256_file
from quantize.convert import gguf_metadata
from quantize.export import FAMILIES, detect_family

CONVERSATION = [
    {"role": "system", "content": "You answer questions about Widgetd."},
    {"role": "user", "content": "How do I start it?"},
    {"role": "assistant", "content": "Run widgetd start."},
    {"role": "user", "content": "And stop it?"},
]


# --- a small evaluator for the Go-template subset Ollama templates use ---------------------
_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _parse(template: str):
    """-> nested list of ("text", s) / ("var", name) / ("if", cond, then, else) / ("range", field, body)."""
    tokens, pos, trim_next = [], 0, False
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        tokens.append(("text", text))
        tokens.append(("action", m.group(2)))
        trim_next, pos = bool(m.group(3)), m.end()
    tail = template[pos:]
    tokens.append(("text", tail.lstrip() if trim_next else tail))

    def block(i):
        out = []
        while i < len(tokens):
            kind, val = tokens[i]
            if kind == "text":
                out.append(("text", val))
                i += 1
            elif val in ("end", "else"):
                return out, i
            elif val.startswith("if "):
                then, i = block(i + 1)
                other = []
                if tokens[i][1] == "else":
                    other, i = block(i + 1)
                out.append(("if", val[3:], then, other))
                i += 1
            elif val.startswith("range "):
                body, i = block(i + 1)
                out.append(("range", val[6:], body))
                i += 1
            else:
                out.append(("var", val))
                i += 1
        return out, i

    return block(0)[0]


def _value(expr: str, ctx: dict):
    parts = shlex.split(expr)
    if parts[0] in ("eq", "ne"):
        a, b = _value(parts[1], ctx), parts[2]
        return (a == b) if parts[0] == "eq" else (a != b)
    assert parts[0].startswith("."), expr
    return ctx.get(parts[0][1:], "")


def render_go(template: str, ctx: dict) -> str:
    def run(nodes, ctx):
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "var":
                out.append(str(_value(node[1], ctx)))
            elif node[0] == "if":
                out.append(run(node[2] if _value(node[1], ctx) else node[3], ctx))
            elif node[0] == "range":
                for item in _value(node[1], ctx):
                    out.append(run(node[2], {**ctx, **{k.capitalize(): v for k, v in item.items()}}))
        return "".join(out)

    return run(_parse(template), ctx)


def _jinja(chat_template: str, messages: list[dict]) -> str:
    return jinja2.Environment().from_string(chat_template).render(messages=messages, add_generation_prompt=True)


def _modelfile(text: str) -> dict:
    """Parse Modelfile directives: `KEY value` lines and triple-quoted multi-line blocks."""
    directives: dict = {"PARAMETER": []}
    for m in re.finditer(r'^(FROM|TEMPLATE|SYSTEM|PARAMETER|LICENSE) (?:"""(.*?)"""$|([^\n]*)$)', text, re.M | re.S):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        if m.group(1) == "PARAMETER":
            directives["PARAMETER"].append(value)
        else:
            directives[m.group(1)] = value
    return directives


def test_ollama_export_template_matches_the_models_chat_template(run_cli, smollm_gguf, tmp_path):
    code, out, err = run_cli("export", "ollama", "smollm2-135m", "-o", str(tmp_path))
    assert code == 0, err
    folder = tmp_path / "smollm2-135m"
    assert out.strip() == str(folder)
    d = _modelfile((folder / "Modelfile").read_text())
    gguf = folder / d["FROM"].removeprefix("./")
    assert gguf.is_file() and sha256_file(gguf) == sha256_file(smollm_gguf)
    assert 'stop "<|im_end|>"' in d["PARAMETER"] and 'stop "<|im_start|>"' in d["PARAMETER"]
    assert "num_ctx 4096" in d["PARAMETER"] and d["LICENSE"] == "Apache-2.0"
    chat_template = gguf_metadata(smollm_gguf)["tokenizer.chat_template"]
    # Ollama passes the system prompt as .System and every message (system included) in .Messages
    ollama = render_go(d["TEMPLATE"], {"System": CONVERSATION[0]["content"], "Messages": CONVERSATION})
    assert ollama == _jinja(chat_template, CONVERSATION)
    # no system message: Modelfile SYSTEM is used; the prompt still matches the jinja render
    ollama = render_go(d["TEMPLATE"], {"System": d["SYSTEM"], "Messages": CONVERSATION[1:]})
    assert ollama == _jinja(chat_template, [{"role": "system", "content": d["SYSTEM"]}, *CONVERSATION[1:]])


def test_jan_export_model_json(run_cli, smollm_gguf, tmp_path):
    code, out, err = run_cli("export", "jan", "smollm2-135m", "-o", str(tmp_path / "jan" / "models"))
    assert code == 0, err
    folder = tmp_path / "jan" / "models" / "smollm2-135m"
    spec = json.loads((folder / "model.json").read_text())
    assert spec["id"] == folder.name and spec["object"] == "model" and spec["format"] == "gguf"
    gguf = folder / spec["settings"]["llama_model_path"]
    assert gguf.is_file() and spec["sources"][0]["filename"] == gguf.name
    assert spec["metadata"]["size"] == gguf.stat().st_size
    assert "<|im_end|>" in spec["parameters"]["stop"] and spec["settings"]["ctx_len"] == 4096
    chat_template = gguf_metadata(smollm_gguf)["tokenizer.chat_template"]
    system, question = CONVERSATION[0]["content"], CONVERSATION[1]["content"]
    prompt = spec["settings"]["prompt_template"].format(system_message=system, prompt=question)
    assert prompt == _jinja(chat_template, CONVERSATION[:2])


def test_export_errors_are_clear(run_cli, tmp_path):
    code, _, err = run_cli("export", "ollama", "no-such-model", "-o", str(tmp_path))
    assert code != 0 and "unknown model 'no-such-model'" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects the target before any handler runs
        run_cli("export", "lmstudio", "smollm2-135m")
    assert exit_info.value.code == 2
    with pytest.raises(OnboardError, match="no chat template"):
        detect_family(None)
    with pytest.raises(OnboardError, match="unrecognised chat template"):
        detect_family("{% for m in messages %}### {{ m.content }}{% endfor %}")
    assert detect_family("<|start_header_id|>").name == "llama3"
    assert [f.name for f in FAMILIES] == ["chatml", "llama3"]
