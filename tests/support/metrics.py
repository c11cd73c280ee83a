"""Prometheus' text format parsed into samples, and the sums the tests and the bench take."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def parse_metrics(text: str, prefixes: Iterable[str] = ("",)) -> Samples:
    """(name, labels) -> value of every sample whose line starts with one of ``prefixes``."""
    prefixes = tuple(prefixes)
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or not line.startswith(prefixes):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = frozenset(_LABEL.findall(match.group(3) or ""))
        with contextlib.suppress(ValueError):
            samples[(match.group(1), labels)] = float(match.group(4))
    return samples


def select(samples: Samples, name: str, **labels: str) -> dict[Labels, float]:
    """The series of metric ``name`` that have (at least) these label values."""
    want = set(labels.items())
    return {lab: v for (n, lab), v in samples.items() if n == name and want <= lab}


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the series ``select`` finds (0.0 when there is none)."""
    return sum(select(samples, name, **labels).values())


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """Metric ``name`` summed by the value of one label ("" for series without it)."""
    out: dict[str, float] = {}
    for lab, value in select(samples, name).items():
        key = dict(lab).get(label, "")
        out[key] = out.get(key, 0.0) + value
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """after - before per key, for the keys whose value changed."""
    keys = sorted(set(after) | set(before))
    return {
        k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys if after.get(k) != before.get(k)
    }
