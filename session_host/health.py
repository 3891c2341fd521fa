"""Process health figures for `/` and the benchmarks: event-loop lag, RSS, CPU, events handled."""

from __future__ import annotations

import asyncio
import resource
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from callplane.clock import percentile


@dataclass(slots=True)
class HostCounters:
    """Shared by every session on this replica (plain counters, read by `/`)."""

    server_events: int = 0


@dataclass(slots=True)
class LoopMonitor:
    """Measures how late a timer fires: the event loop's lag, the figure callers feel. Ten
    samples a second while calls are live (`busy`), one a second otherwise: each wake-up of an
    idle process costs more than the sample is worth."""

    interval: float = 0.1
    idle_interval: float = 1.0
    busy: Callable[[], bool] = lambda: True
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            interval = self.interval if self.busy() else self.idle_interval
            start = loop.time()
            await asyncio.sleep(interval)
            self.samples.append(max(0.0, (loop.time() - start - interval) * 1000))

    def p99(self) -> float | None:
        return percentile(list(self.samples), 99)

    def reset(self) -> None:
        self.samples.clear()


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
