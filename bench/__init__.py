"""The benchmarks behind ``make bench``: ``fire.py`` runs them, each other module is one part."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# tests/support is the local-cluster kit the test suites use too (free_port, poll, the metrics
# parser, the percentile, the cluster handle). It is no installed package: pytest finds it through
# its pythonpath setting (pyproject.toml), this package by the same path, set here before any of
# its modules imports it.
sys.path.insert(0, str(REPO / "tests"))
