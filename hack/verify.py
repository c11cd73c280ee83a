#!/usr/bin/env python3
"""Fail when a checked-in generated file differs from what its generator writes now."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NIGHTSHIFT = REPO / ".venv" / "bin" / "nightshift"

# (checked-in file, command that generates it)
GENERATED = [
    ("crds/scheduledtasks.nightshift.dev.yaml", [str(NIGHTSHIFT), "crd"]),
    ("crds/calendars.nightshift.dev.yaml", [str(NIGHTSHIFT), "crd", "Calendar"]),
    ("crds/backfills.nightshift.dev.yaml", [str(NIGHTSHIFT), "crd", "Backfill"]),
]


PYTHON = REPO / ".venv" / "bin" / "python"
CHECKS = [
    [str(PYTHON), str(REPO / "hack" / "chart" / "sync_crd.py"), "--check"],
    [str(PYTHON), str(REPO / "hack" / "chart" / "gen_schema.py"), "--check"],
    [str(PYTHON), str(REPO / "hack" / "chart" / "gen_readme.py"), "--check"],
    [str(PYTHON), str(REPO / "hack" / "gen_cli_docs.py"), "--check"],
    # requirements/*.txt: pinned as constraints.txt says, for what pyproject.toml asks (offline).
    [str(PYTHON), str(REPO / "hack" / "requirements.py"), "--check"],
]


def main() -> int:
    """Compare each generated file with a fresh generation; print a diff for each drift."""
    drift = 0
    for relative, command in GENERATED:
        fresh = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        path = REPO / relative
        current = path.read_text() if path.exists() else ""
        if fresh != current:
            drift += 1
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                fromfile=f"{relative} (checked in)",
                tofile=f"{relative} (generated)",
            )
            sys.stdout.writelines(diff)
            print(f"\n{relative} is out of date: run `make generate` and commit the result.")
    # Docs whose generators have their own --check mode (they print the diff themselves).
    for check in CHECKS:
        if subprocess.run(check, check=False).returncode != 0:
            drift += 1
    if drift:
        return 1
    print(f"verify: {len(GENERATED) + len(CHECKS)} generated file(s) up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
