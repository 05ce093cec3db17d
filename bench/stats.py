"""Median and min-max of repeated measurements, and paired ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

Stat = dict[str, Any]


def summarize(values: Sequence[float | None]) -> Stat:
    """``{"median", "min", "max", "runs"}`` of the values that were measured (None: failed run)."""
    measured = [float(v) for v in values if v is not None]
    if not measured:
        return {"median": None, "min": None, "max": None, "runs": list(values)}
    return {
        "median": statistics.median(measured),
        "min": min(measured),
        "max": max(measured),
        "runs": [None if v is None else round(float(v), 6) for v in values],
    }


def ratios(numerators: Sequence[float | None], denominators: Sequence[float | None]) -> Stat:
    """Per-run ratios ``a_i / b_i`` (each pair measured back to back), summarized."""
    paired = [a / b if a is not None and b else None for a, b in zip(numerators, denominators, strict=True)]
    return summarize(paired)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]
