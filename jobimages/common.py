"""Helpers shared by the example job programs: the termination message and SIGTERM handling."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

LIMIT = 1024  # Nightshift keeps the first 1 KiB of the message


def summary(text: str) -> None:
    """Write the one-line result summary Kubernetes shows as the termination message."""
    path = os.environ.get("TERMINATION_MESSAGE_PATH", "/dev/termination-log")
    data = text.strip().encode()[:LIMIT]
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError:
        # Outside a pod there may be no /dev/termination-log; the summary also goes to stdout.
        pass
    print(text, flush=True)


class Stop(Exception):
    """Raised in the main thread when SIGTERM arrives."""


def on_sigterm() -> None:
    """Turn SIGTERM into a Stop exception so the program can clean up and exit by itself."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stop()

    signal.signal(signal.SIGTERM, handler)


def exit_with(code: int, text: str) -> None:
    """Write the summary and exit with ``code``."""
    summary(text)
    sys.exit(code)
