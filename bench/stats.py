"""Latency summaries: percentiles with linear interpolation (numpy's default), all in milliseconds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of samples, interpolating between the two nearest ranks."""
    if not samples:
        return math.nan
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p95: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Summary:
        if not samples_ms:
            raise ValueError("no samples")
        return cls(
            n=len(samples_ms),
            p50=percentile(samples_ms, 50),
            p95=percentile(samples_ms, 95),
            mean=statistics.fmean(samples_ms),
            min=min(samples_ms),
            max=max(samples_ms),
        )


def ms(value: float) -> str:
    """A duration in ms with sensible precision for a table."""
    if math.isnan(value):
        return "—"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def ratio(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "—"
    return f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / (1024 * 1024):.1f}"
