"""report: build a daily summary from CSV input; exit 75 on a transient error, 2 on bad input.

A realistic job: it reads its input, writes an output keyed by the slot (so a retry of the same
slot overwrites instead of duplicating), and reports a one-line summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import exit_with

TEMPORARY = 75  # EX_TEMPFAIL: retry me (retry.onExitCodes: [75])
BAD_INPUT = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="CSV with columns team,minutes")
    parser.add_argument("--output-dir", required=True, help="where report-<slot>.json goes")
    args = parser.parse_args()
    slot = os.environ.get("NIGHTSHIFT_SCHEDULED_AT", "manual").replace(":", "")
    source = Path(args.input)
    if not source.exists():
        exit_with(TEMPORARY, f"input {source} not there yet")
    totals: dict[str, int] = {}
    try:
        with source.open(newline="") as handle:
            for row in csv.DictReader(handle):
                totals[row["team"]] = totals.get(row["team"], 0) + int(row["minutes"])
    except (KeyError, ValueError) as error:
        exit_with(BAD_INPUT, f"bad input in {source}: {error}")
    out = Path(args.output_dir) / f"report-{slot}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(totals, sort_keys=True))
    busiest = max(totals, key=lambda team: totals[team]) if totals else "nobody"
    exit_with(0, f"{len(totals)} teams, {sum(totals.values())} minutes; busiest: {busiest}")


if __name__ == "__main__":
    main()
