#!/usr/bin/env python3
"""Writes the values table of charts/portcullis/README.md from values.schema.json (the
descriptions, types and allowed values) and values.yaml (the defaults), between the markers
`<!-- values:begin -->` and `<!-- values:end -->`.

    scripts/chart-readme.py           rewrite the table
    scripts/chart-readme.py --check   exit 1 (with a diff) when the README's table is stale
"""
from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "portcullis"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"


def resolve(schema: dict, node: dict) -> dict:
    ref = node.get("$ref")
    if not ref:
        return node
    target = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def kind(node: dict) -> str:
    t = node.get("type", "")
    t = "/".join(t) if isinstance(t, list) else t
    if "enum" in node:
        return " \\| ".join(f"`{v}`" if v != "" else '`""`' for v in node["enum"])
    return t


def cell(value) -> str:
    if value is None:
        return "`null`"
    text = json.dumps(value, separators=(", ", ": ")) if isinstance(value, (dict, list)) \
        else json.dumps(value) if isinstance(value, str) else str(value).lower() \
        if isinstance(value, bool) else str(value)
    return f"`{text}`".replace("|", "\\|")


def rows(schema: dict, node: dict, defaults, path: str = ""):
    node = resolve(schema, node)
    props = node.get("properties")
    if props and path:
        desc = node.get("description")
        if desc:
            yield f"| `{path}` | | | {desc} |"
    if props:
        for name, sub in props.items():
            d = defaults.get(name) if isinstance(defaults, dict) else None
            yield from rows(schema, sub, d, f"{path}.{name}" if path else name)
        return
    desc = node.get("description", "").replace("|", "\\|")
    yield f"| `{path}` | {kind(node)} | {cell(defaults)} | {desc} |"


def table() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    lines = ["| value | type | default | description |", "|---|---|---|---|"]
    lines += rows(schema, schema, defaults)
    return "\n".join(lines) + "\n"


def main() -> int:
    readme = CHART / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(BEGIN + "\n")
    _, _, tail = rest.partition(END)
    if not rest or not tail and END not in rest:
        print(f"chart-readme: {readme} lacks the {BEGIN} ... {END} markers", file=sys.stderr)
        return 1
    new = f"{head}{BEGIN}\n{table()}{END}{tail}"
    if sys.argv[1:] == ["--check"]:
        if new != text:
            print(f"chart-readme: {readme} is stale; run scripts/chart-readme.py", file=sys.stderr)
            sys.stderr.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       "README.md", "generated"))
            return 1
        return 0
    readme.write_text(new)
    print(f"chart-readme: {readme} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
