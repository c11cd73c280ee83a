"""Read a chart's values.yaml with its helm-docs style comments (shared by gen_schema/gen_readme).

The conventions, as in cert-manager's and helm-docs' charts:

    # -- What the value does; continuation lines
    # are further `#` lines right below.
    # @default -- what the README shows as the default (when the literal one would mislead)
    # @schema {"enum": ["a", "b"]}
    key: value

A `# --` comment documents the key right below it. Every key must be documented, except inside a
value whose @schema makes it opaque (see `Value.opaque`). `@schema` holds JSON-Schema keywords
merged into the schema generated for the key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Value", "ValuesError", "parse_values"]

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
_COMMENT = re.compile(r"^(?P<indent> *)#(?P<text>.*)$")


class ValuesError(Exception):
    """values.yaml breaks a documentation convention."""


@dataclass
class Value:
    """One key of values.yaml: its path, default, description and schema additions."""

    path: tuple[str, ...]
    default: Any
    description: str = ""
    default_text: str | None = None  # from `@default --`
    schema: dict[str, Any] = field(default_factory=dict)  # from `@schema`
    children: list[Value] = field(default_factory=list)

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def opaque(self) -> bool:
        """A Kubernetes field or free-form map: its content is not described key by key."""
        return "additionalProperties" in self.schema or not isinstance(self.default, dict)


def _comment_block(lines: list[str], index: int) -> list[str]:
    """The `#` lines directly above line ``index`` (no blank line in between), top to bottom."""
    block: list[str] = []
    i = index - 1
    while i >= 0:
        match = _COMMENT.match(lines[i])
        if match is None:
            break
        block.insert(0, match.group("text"))
        i -= 1
    return block


def _parse_comment(block: list[str], where: str) -> tuple[str, str | None, dict[str, Any]]:
    description: list[str] = []
    default_text: str | None = None
    schema: dict[str, Any] = {}
    in_description = False
    for raw in block:
        text = raw.strip()
        if text.startswith("-- "):
            in_description = True
            description = [text[3:].strip()]
        elif text.startswith("@default -- "):
            in_description = False
            default_text = text[len("@default -- ") :].strip()
        elif text.startswith("@schema "):
            in_description = False
            try:
                schema.update(json.loads(text[len("@schema ") :]))
            except json.JSONDecodeError as error:
                raise ValuesError(f"{where}: @schema is not JSON: {error}") from None
        elif in_description and text:
            description.append(text)
        else:
            in_description = False
    return " ".join(description), default_text, schema


def parse_values(path: Path) -> Value:
    """The tree of documented values in ``path``; raises ValuesError on an undocumented key."""
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValuesError(f"{path}: the top level must be a mapping")
    lines = text.splitlines()
    # Comments per key path, found by indentation (values.yaml uses 2-space block mappings).
    docs: dict[tuple[str, ...], tuple[str, str | None, dict[str, Any]]] = {}
    stack: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        match = _KEY.match(line)
        if match is None:
            continue
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key_path = (*(k for _, k in stack), match.group("key"))
        stack.append((indent, match.group("key")))
        where = f"{path}:{index + 1} ({'.'.join(key_path)})"
        docs[key_path] = _parse_comment(_comment_block(lines, index), where)

    def build(key_path: tuple[str, ...], default: Any) -> Value:
        description, default_text, schema = docs.get(key_path, ("", None, {}))
        value = Value(key_path, default, description, default_text, schema)
        if isinstance(default, dict) and not value.opaque:
            value.children = [build((*key_path, k), v) for k, v in default.items()]
        elif not description and key_path:
            raise ValuesError(f"{path}: `{value.key}` has no `# --` description")
        return value

    root = Value((), data)
    root.children = [build((k,), v) for k, v in data.items()]
    return root
