"""Median and p95 of small samples, and how they are printed."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def p95(xs: Sequence[float]) -> float:
    """Nearest-rank 95th percentile (with few samples: the largest or next to it)."""
    s = sorted(xs)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


@dataclass(frozen=True)
class Stat:
    median: float
    p95: float
    n: int

    @classmethod
    def of(cls, xs: Sequence[float]) -> Stat | None:
        return cls(statistics.median(xs), p95(xs), len(xs)) if xs else None


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


def seconds(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def fmt(st: Stat | None, unit: str = "s") -> str:
    """`median / p95 (n)` in the unit's natural form."""
    if st is None:
        return "n/a"
    f = {"s": seconds, "MiB": mib, "Gbit/s": lambda v: f"{v / 1e9:.2f} Gbit/s",
         "Mbit/s": lambda v: f"{v / 1e6:.0f} Mbit/s"}[unit]
    if st.n == 1:
        return f"{f(st.median)} (n=1)"
    return f"{f(st.median)} / {f(st.p95)} (n={st.n})"


def ratio(a: Stat | None, b: Stat | None) -> str:
    if a is None or b is None or b.median == 0:
        return "n/a"
    return f"{a.median / b.median:.2f}x"
