"""Background work that never dies silently: a crashed task is logged with its traceback and
started again after a backoff, and its restarts are counted where operators can see them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("callplane.supervise")


async def supervised(
    name: str,
    make: Callable[[], Awaitable[None]],
    restarts: dict[str, int],
    *,
    first_wait_s: float = 0.5,
    max_wait_s: float = 30.0,
) -> None:
    """Run `make()` until it returns; when it raises, log, wait (doubling) and run it again."""
    wait = first_wait_s
    restarts.setdefault(name, 0)
    while True:
        try:
            await make()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            restarts[name] += 1
            log.exception("background task %s crashed; restarting it in %.1f s", name, wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, max_wait_s)
