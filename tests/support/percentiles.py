"""The one percentile definition of the tests and the bench: nearest rank (p99 of 100 values is
the second largest)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import overload


@overload
def percentile(values: Iterable[float], p: float) -> float | None: ...


@overload
def percentile(values: Iterable[float], p: float, *, empty: float) -> float: ...


def percentile(values: Iterable[float], p: float, *, empty: float | None = None) -> float | None:
    """The nearest-rank ``p``-th percentile (``p`` in percent, 0 < p <= 100): the smallest value
    that at least p % of the values are less than or equal to; ``empty`` when there is none."""
    ordered = sorted(values)
    if not ordered:
        return empty
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
