"""Failed admin sign-ins per client, so the token cannot be guessed at request speed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

MAX_FAILURES = 5  # wrong tokens per client per window before sign-in answers 429
FAILURE_WINDOW_S = 60.0


@dataclass(slots=True)
class SignInLimiter:
    """Failed sign-ins per client, in a sliding window (per replica: guessing is slowed to
    MAX_FAILURES per minute per client per replica; the token is 32+ characters)."""

    failures: dict[str, list[float]] = field(default_factory=dict)

    def blocked_for(self, client: str) -> float:
        now = time.monotonic()
        recent = [t for t in self.failures.get(client, []) if now - t < FAILURE_WINDOW_S]
        self.failures[client] = recent
        if len(self.failures) > 10_000:  # bounded: forget clients with nothing recent
            self.failures = {k: v for k, v in self.failures.items() if v}
        return FAILURE_WINDOW_S - (now - recent[0]) if len(recent) >= MAX_FAILURES else 0.0

    def failed(self, client: str) -> None:
        self.failures.setdefault(client, []).append(time.monotonic())
