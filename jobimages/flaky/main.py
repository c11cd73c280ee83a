"""flaky: fail with a chosen exit code for the first N attempts, then succeed (shows retries).

The attempt number comes from NIGHTSHIFT_ATTEMPT (the Job annotation nightshift.dev/attempt,
exposed through the downward API), so the behaviour is the same on every retry of a slot.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import exit_with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fail-times", type=int, default=2, help="attempts that fail")
    parser.add_argument("--exit-code", type=int, default=75, help="exit code of a failure")
    parser.add_argument(
        "--message",
        default="upstream unavailable (try again later)",
        help="what a failed attempt says in its termination message",
    )
    args = parser.parse_args()
    attempt = int(os.environ.get("NIGHTSHIFT_ATTEMPT", "1"))
    if attempt <= args.fail_times:
        exit_with(args.exit_code, f"attempt {attempt}: {args.message}")
    exit_with(0, f"attempt {attempt}: synced")


if __name__ == "__main__":
    main()
