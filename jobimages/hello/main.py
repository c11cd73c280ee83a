"""hello: print a greeting, succeed, and leave a one-line summary as the termination message."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import exit_with

if __name__ == "__main__":
    who = os.environ.get("GREETING_NAME", "world")
    slot = os.environ.get("NIGHTSHIFT_SCHEDULED_AT", "an unscheduled moment")
    print(f"hello, {who}")
    exit_with(0, f"greeted {who} for {slot}")
