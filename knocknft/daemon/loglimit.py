"""Rate limits for the log lines a flood makes: one per knock packet, or one per completion.

`KnockLog` is a token bucket asked before a line is formatted; it counts what it holds back, and
`report` says so in one line (the loop asks every few seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("knocknft")

# Per-knock lines (Stage n, timeouts) are rate-limited so a flood cannot flood the log too.
KNOCK_LOG_RATE = 50.0
KNOCK_LOG_BURST = 200.0

__all__ = ["KNOCK_LOG_BURST", "KNOCK_LOG_RATE", "KnockLog"]


class KnockLog:
    """A token bucket for per-knock log lines (or, as `what` says, other lines a flood makes one
    per packet or completion); counts what it holds back."""

    def __init__(
        self,
        clock: Callable[[], float],
        rate: float = KNOCK_LOG_RATE,
        burst: float = KNOCK_LOG_BURST,
        what: str = "knock log lines",
    ) -> None:
        self._clock = clock
        self._what = what
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = clock()
        self.suppressed = 0
        self._reported = 0

    def allow(self) -> bool:
        """Whether the bucket lets one more line through; counts it as held back if not.
        Asked before formatting, so a suppressed line costs no formatting at all."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.suppressed += 1
        return False

    def report(self) -> None:
        if self.suppressed > self._reported:
            log.warning(
                "%d %s suppressed (rate limit %g/s): a flood?",
                self.suppressed - self._reported,
                self._what,
                self._rate,
            )
            self._reported = self.suppressed
