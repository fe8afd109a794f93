"""OpenAPI YAML/JSON to Documents: one per operation (method, path, summary, parameters and
request/response fields with defaults, $refs resolved) plus one overview Document."""
from __future__ import annotations

import json

from assistant.rag.documents import Document, SkipFile

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# --- OpenAPI -------------------------------------------------------------------------------
def _resolve(spec: dict, node, seen: frozenset = frozenset()):
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#/"):
            return {"type": ref.rsplit("/", 1)[-1]}
        target = spec
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        resolved = _resolve(spec, target, seen | {ref})
        if isinstance(resolved, dict):
            resolved = {**resolved, "x-ref-name": ref.rsplit("/", 1)[-1]}
        return resolved
    return node


def _schema_lines(spec: dict, schema, indent: int = 0, seen: frozenset = frozenset(), depth: int = 0) -> list[str]:
    schema = _resolve(spec, schema, seen)
    if not isinstance(schema, dict) or depth > 4:
        return []
    name = schema.get("x-ref-name")
    seen = seen | {name} if name else seen
    for combo in ("allOf", "oneOf", "anyOf"):
        if combo in schema and "properties" not in schema:
            lines = []
            for sub in schema[combo]:
                lines += _schema_lines(spec, sub, indent, seen, depth + 1)
            return lines
    if schema.get("type") == "array" and "items" in schema:
        return _schema_lines(spec, schema["items"], indent, seen, depth + 1)
    required = set(schema.get("required") or []) if isinstance(schema.get("required"), list) else set()
    lines = []
    for prop, sub in (schema.get("properties") or {}).items():
        sub_r = _resolve(spec, sub, seen)
        if not isinstance(sub_r, dict):
            continue
        lines.append(" " * indent + "- " + _field_line(prop, sub_r, prop in required or sub_r.get("required") is True))
        lines += _schema_lines(spec, sub_r, indent + 2, seen, depth + 1)
    return lines


def _field_line(name: str, s: dict, required: bool) -> str:
    kind = s.get("type") or s.get("x-ref-name") or ""
    if kind == "array" and isinstance(s.get("items"), dict):
        kind = f"array of {s['items'].get('type') or s['items'].get('$ref', '').rsplit('/', 1)[-1] or 'items'}"
    facts = [str(kind)] if kind else []
    if required:
        facts.append("required")
    for key in ("default", "enum", "minimum", "maximum", "min", "max", "example"):
        if key in s:
            facts.append(f"{key} {json.dumps(s[key], ensure_ascii=False, default=str)}")
    desc = " ".join(str(s.get("description") or s.get("title") or "").split())
    return f"`{name}` ({', '.join(facts)})" + (f": {desc}" if desc else "")


def openapi_documents(spec: dict, path: str) -> list[Document]:
    info = spec.get("info") or {}
    api = str(info.get("title") or "API")
    docs: list[Document] = []
    overview = [f"{api} (OpenAPI {spec.get('openapi') or spec.get('swagger')}, version {info.get('version') or spec.get('version') or '?'})",
                str(info.get("description") or "").strip()]
    if spec.get("servers"):
        overview.append("Servers: " + ", ".join(str(s.get("url")) for s in spec["servers"] if isinstance(s, dict)))
    for tag in spec.get("tags") or []:
        if isinstance(tag, dict):
            overview.append(f"- {tag.get('name')}: {tag.get('description', '')}")
    ops = []
    for route, item in (spec.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            ops.append(f"- {method.upper()} {route}: {op.get('summary', '')}")
            docs.append(Document(path=path, kind="openapi", heading=f"{api} > {method.upper()} {route}",
                                 text=_operation_text(spec, method, route, op, shared)))
    overview += ["", "Operations:", *ops]
    docs.insert(0, Document(path=path, kind="openapi", heading=api, text="\n".join(x for x in overview if x is not None).strip()))
    return docs


def _operation_text(spec: dict, method: str, route: str, op: dict, shared: list) -> str:
    lines = [f"{method.upper()} {route}"]
    meta = [f"operationId {op['operationId']}"] if op.get("operationId") else []
    if op.get("tags"):
        meta.append("tags: " + ", ".join(map(str, op["tags"])))
    if meta:
        lines.append("; ".join(meta))
    for key in ("summary", "description"):
        if op.get(key):
            lines.append(str(op[key]).strip())
    params = [_resolve(spec, p) for p in [*shared, *(op.get("parameters") or [])]]
    params = [p for p in params if isinstance(p, dict)]
    if params:
        lines.append("\n## Parameters")
        for p in params:
            s = _resolve(spec, p.get("schema") or {})
            s = {**(s if isinstance(s, dict) else {}), **{k: v for k, v in p.items() if k in ("description", "example")}}
            lines.append(f"- in {p.get('in', '?')}: " + _field_line(str(p.get("name")), s, bool(p.get("required"))))
    body = _resolve(spec, op.get("requestBody") or {})
    content = (body.get("content") if isinstance(body, dict) else None) or op.get("content") or {}
    for media, spec_media in (content.items() if isinstance(content, dict) else []):
        schema = _resolve(spec, (spec_media or {}).get("schema") or {})
        name = schema.get("x-ref-name", "") if isinstance(schema, dict) else ""
        lines.append(f"\n## Request body ({media}{', schema ' + name if name else ''})")
        lines += _schema_lines(spec, schema)
    for code, resp in (op.get("responses") or {}).items():
        resp = _resolve(spec, resp)
        if not isinstance(resp, dict):
            continue
        lines.append(f"\n## Response {code}: {resp.get('description', '')}".rstrip(": "))
        for media, spec_media in (resp.get("content") or {}).items():
            schema = _resolve(spec, (spec_media or {}).get("schema") or {})
            name = schema.get("x-ref-name", "") if isinstance(schema, dict) else ""
            if name:
                lines.append(f"{media}, schema {name}:")
            lines += _schema_lines(spec, schema)
    for sample in op.get("x-codeSamples") or op.get("x-code-samples") or []:
        if isinstance(sample, dict) and sample.get("source"):
            lines += [f"\n## Example ({sample.get('lang', '')})", f"```{str(sample.get('lang', '')).lower()}",
                      str(sample["source"]).rstrip(), "```"]
    return "\n".join(lines).strip()


def load_structured(text: str, suffix: str):
    try:
        if suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except (ValueError, Exception) as e:  # yaml.YAMLError and friends
        raise SkipFile(f"cannot parse {suffix[1:].upper()} ({type(e).__name__})") from None
