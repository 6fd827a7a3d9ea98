#!/usr/bin/env python3
"""Write the manual page ``lightning-<method>.7`` of every custommsg-* method from its JSON schema.

Core Lightning makes its own pages the same way (the schemas in ``doc/schemas`` become
``doc/lightning-<command>.7``), and ``lightning-cli help <command>`` opens them with
``man`` (cli/lightning-cli.c: try_exec_man). Usage::

    tools/schema2man.py doc/schemas doc/man           # write the pages
    tools/schema2man.py --check doc/schemas doc/man   # exit 1 if a page differs from its schema
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

SOURCE = "custommsg"


def _escape(text: str) -> str:
    """Plain text as roff: backslashes doubled, a leading dot or quote kept from being a request."""
    text = text.replace("\\", "\\e")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def _inline(text: str) -> str:
    """The schemas' markdown (**bold**, *italic*, `code`, [text](url)) as roff fonts."""
    text = _escape(text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 <\2>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\\fI\1\\fR", text)
    return re.sub(r"`([^`]+)`", r"\\fB\1\\fR", text)


def _paragraphs(lines: list[str]) -> str:
    out: list[str] = []
    for line in lines:
        if not line.strip():
            out.append(".PP")
        elif line.startswith("- "):
            out += [".IP \\(bu 2", _inline(line[2:])]
        else:
            out.append(_inline(line))
    return "\n".join(out)


def _type(spec: dict[str, Any]) -> str:
    if "oneOf" in spec:
        return " or ".join(_type(alternative) for alternative in spec["oneOf"])
    kind = spec.get("type", "any")
    if kind == "array" and isinstance(spec.get("items"), dict):
        return f"array of {_type(spec['items'])}"
    return str(kind)


def _fields(properties: dict[str, Any], required: list[str], depth: int = 0) -> list[str]:
    out: list[str] = []
    for name, spec in properties.items():
        words = [_type(spec)] + ([] if name in required else ["optional"])
        if "default" in spec:
            words.append(f"default {spec['default']}")
        if "enum" in spec:
            words.append("one of " + ", ".join(f"\"{v}\"" for v in spec["enum"]))
        description = " ".join(spec.get("description", []))
        for alternative in spec.get("oneOf", []):
            description += " " + " ".join(alternative.get("description", []))
        tag = f"{'  ' * depth}\\fB{name}\\fR ({', '.join(words)})".replace('"', "\\(dq")
        out += [f'.IP "{tag}" 4', _inline(description.strip())]
        nested = spec.get("items", spec) if spec.get("type") == "array" else spec
        if isinstance(nested, dict) and "properties" in nested:
            out += _fields(nested["properties"], nested.get("required", []), depth + 1)
    return out


def render(schema: dict[str, Any], version: str) -> str:
    method = schema["rpc"]
    request = schema.get("request", {})
    response = schema.get("response", {})
    params = request.get("properties", {})
    required = request.get("required", [])
    synopsis = " ".join(f"\\fI{p}\\fR" if p in required else f"[\\fI{p}\\fR]" for p in params)
    lines = [
        f'.TH "LIGHTNING-{method.upper()}" "7" "" "{SOURCE} {version}" "{SOURCE} Manual"',
        ".SH NAME",
        f"lightning-{method} \\- {_escape(schema.get('title', method))}",
        ".SH SYNOPSIS",
        f"\\fB{method}\\fR {synopsis}".rstrip(),
        ".SH DESCRIPTION",
        _paragraphs(schema.get("description", [])),
    ]
    if params:
        lines += [".PP", "Parameters:", *_fields(params, required)]
    lines += [".SH RETURN VALUE", _paragraphs(response.get("pre_return_value_notes", []))]
    lines += _fields(response.get("properties", {}), response.get("required", []))
    lines += [".PP", _paragraphs(response.get("post_return_value_notes", []))]
    for title, key in (("ERRORS", "errors"), ("AUTHOR", "author"), ("RESOURCES", "resources")):
        if schema.get(key):
            lines += [f".SH {title}", _paragraphs(schema[key])]
    if schema.get("see_also"):
        lines += [".SH SEE ALSO", _inline(", ".join(schema["see_also"]))]
    return "\n".join(line for line in lines if line) + "\n"


def pages(schemas: Path, version: str) -> dict[str, str]:
    found = {}
    for path in sorted(schemas.glob("custommsg-*.json")):
        schema = json.loads(path.read_text())
        found[f"lightning-{schema['rpc']}.7"] = render(schema, version)
    return found


def main(argv: list[str]) -> int:
    check = "--check" in argv
    schemas, out = (Path(a) for a in argv if a != "--check")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from custommsg import __version__

    wanted = pages(schemas, __version__)
    if check:
        stale = [name for name, text in wanted.items() if not (out / name).exists() or (out / name).read_text() != text]
        extra = [p.name for p in out.glob("lightning-custommsg-*.7") if p.name not in wanted]
        for name in stale + extra:
            print(f"{out / name}: out of date with {schemas} (run make man)", file=sys.stderr)
        return 1 if stale or extra else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in wanted.items():
        (out / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
