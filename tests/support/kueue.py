"""Kueue for its integration tests: hack/build-kueue.sh run in the background from the session's
start, and where it put the build once it is done."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support.cluster import REPO

BUILD_KUEUE = REPO / "hack" / "build-kueue.sh"


@dataclass
class KueueBuild:
    """hack/build-kueue.sh, started when the session starts if a Kueue test is to run."""

    proc: subprocess.Popen[str] | None
    log: Path

    def directory(self, timeout: float = 2400) -> Path:
        """Where the build put Kueue, once it is done (built here and now if it never started)."""
        if self.proc is None:
            self.proc = start_kueue_build(self.log, nice=False)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        if self.proc.returncode != 0:
            raise AssertionError(f"hack/build-kueue.sh failed; see {self.log}")
        return Path(out.strip().splitlines()[-1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)  # the script and the go commands it started
            self.proc.wait()


def start_kueue_build(log: Path, *, nice: bool) -> subprocess.Popen[str]:
    """hack/build-kueue.sh in its own session, stderr to LOG, the directory on stdout."""
    # Idle I/O class and nice 19: the tests running meanwhile keep the CPU and the disk.
    low = ["nice", "-n", "19", "ionice", "-c", "3"] if nice else []
    with log.open("w") as err:
        return subprocess.Popen(
            [*low, "bash", str(BUILD_KUEUE)],
            stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
        )  # fmt: skip
