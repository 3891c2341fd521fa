"""Garbage-collector settings for the long-running services.

With a thousand live calls a session host tracks a few million objects, and a full collection
walks them all: measured here at up to 220 ms per pass (15 passes, 1.8 s in all, over a
1,000-call run), during which no call's events are handled; that was the tail of the tool round
trip. Almost all of the services' garbage is freed by reference counting the moment it is
dropped (events, parsed models, requests); the cycle collector only has to find the rare cycle,
so it can run far less often. Freezing what start-up loaded (SDK types, schemas) also keeps it
out of every pass.
"""

from __future__ import annotations

import gc

# Young collections after 50,000 net allocations instead of 700; the middle and full ones after
# 20 and 100 of the previous generation's (defaults 10 and 10).
THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    """Collect once, freeze what is alive now (it lives as long as the process), and space out
    the collector's passes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
