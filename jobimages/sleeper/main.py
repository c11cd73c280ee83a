"""sleeper: work for a number of seconds; on SIGTERM stop cleanly and say how far it got."""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import Stop, exit_with, on_sigterm

# 128 + SIGTERM(15), the conventional code for "stopped by SIGTERM".
STOPPED = 143


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to work")
    args = parser.parse_args()
    on_sigterm()
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.seconds:
            time.sleep(0.05)
    except Stop:
        done = time.monotonic() - started
        exit_with(STOPPED, f"stopped by SIGTERM after {done:.1f} of {args.seconds:.0f} s")
    exit_with(0, f"worked {args.seconds:.0f} s")


if __name__ == "__main__":
    main()
