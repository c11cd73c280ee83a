#!/usr/bin/env python3
"""Copy each `kubectl nightshift` command's --help text into docs/cli.md, between its markers.

    .venv/bin/python hack/gen_cli_docs.py           rewrite the blocks in docs/cli.md
    .venv/bin/python hack/gen_cli_docs.py --check   exit 1, with a diff, when docs/cli.md is stale

A block is `<!-- BEGIN HELP: <command> -->` ... `<!-- END HELP -->`, where <command> is
`kubectl nightshift` (the top-level help) or a command name (`run`, `history`, ...). Every command
must have exactly one block. The help text comes from nightshift.kubectl.help_texts(), which uses a
fixed width, so the result does not depend on the terminal.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "cli.md"
sys.path.insert(0, str(REPO / "operator"))  # works from a checkout without an installed package

BLOCK = re.compile(
    r"^<!-- BEGIN HELP: (?P<command>[^>\n]*?) -->\n(?P<body>.*?)^<!-- END HELP -->$",
    re.MULTILINE | re.DOTALL,
)
BEGIN = re.compile(r"^<!-- BEGIN HELP:", re.MULTILINE)


class DocsError(Exception):
    """docs/cli.md's markers do not fit the commands."""


def render(text: str, helps: dict[str, str]) -> str:
    """``text`` with every help block replaced by the current help, in a ```text fence."""
    seen: list[str] = []

    def block(match: re.Match[str]) -> str:
        command = match["command"].strip()
        if command not in helps:
            known = ", ".join(helps)
            raise DocsError(f"HELP marker for unknown command {command!r} (known: {known})")
        seen.append(command)
        body = helps[command]
        if not body.endswith("\n"):
            body += "\n"
        return f"<!-- BEGIN HELP: {command} -->\n```text\n{body}```\n<!-- END HELP -->"

    result = BLOCK.sub(block, text)
    if len(BEGIN.findall(text)) != len(seen):
        raise DocsError("a BEGIN HELP marker has no matching <!-- END HELP -->")
    twice = sorted({c for c in seen if seen.count(c) > 1})
    if twice:
        raise DocsError(f"more than one help block for: {', '.join(twice)}")
    missing = [c for c in helps if c not in seen]
    if missing:
        raise DocsError(f"no help block for: {', '.join(missing)}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/cli.md, or with --check report whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when stale")
    parser.add_argument(
        "--file", type=Path, default=DOCS, help="the document (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    from nightshift.kubectl import help_texts  # noqa: PLC0415 - after the sys.path set-up

    current = args.file.read_text(encoding="utf-8")
    try:
        fresh = render(current, help_texts())
    except DocsError as error:
        print(f"{args.file}: {error}", file=sys.stderr)
        return 1
    if fresh == current:
        print(f"{args.file}: help blocks up to date")
        return 0
    if args.check:
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                fromfile=f"{args.file} (checked in)",
                tofile=f"{args.file} (generated)",
            )
        )
        print(f"\n{args.file} is out of date: run `.venv/bin/python hack/gen_cli_docs.py`.")
        return 1
    args.file.write_text(fresh, encoding="utf-8")
    print(f"{args.file}: help blocks rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
