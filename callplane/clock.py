"""Wall-clock helpers. Times in records and the API are epoch milliseconds, the unit the admin API has always used."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence


def now_ms() -> int:
    return int(time.time() * 1000)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no samples."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
