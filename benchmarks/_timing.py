"""How the benchmark scripts time a repeated operation."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_round(run: Callable[[], Any], ops: int, rounds: int) -> float:
    """Median seconds per operation over `rounds` rounds of `ops` operations."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(ops):
            run()
        times.append((time.perf_counter() - start) / ops)
    return statistics.median(times)
