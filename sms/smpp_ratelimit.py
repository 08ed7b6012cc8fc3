"""Adaptive token bucket for submit_sm pacing (pure: the caller passes ``now``)."""

from __future__ import annotations


class AdaptiveRate:
    """Token bucket at ``rate`` tokens/s (at most ``burst`` saved up).

    On a throttle answer (``on_throttle``) the rate halves (not below ``min_rate``) and sending
    pauses for ``pause_s``; throttles arriving during that pause (the rest of the window
    answering) extend the pause but do not halve again. Each success adds ``max_rate *
    recover_fraction`` back, so the rate climbs linearly to ``max_rate`` (AIMD).
    ``max_rate <= 0`` means unlimited (throttles still pause).
    """

    def __init__(
        self,
        max_rate: float,
        burst: float = 1.0,
        min_rate: float | None = None,
        pause_s: float = 1.0,
        recover_fraction: float = 0.1,
    ):
        self.max_rate = float(max_rate)
        self.burst = max(1.0, float(burst))
        self.min_rate = min_rate if min_rate is not None else max(self.max_rate / 32, 0.1)
        self.pause_s = pause_s
        self.recover_fraction = recover_fraction
        self.rate = self.max_rate
        self._tokens = self.burst
        self._last: float | None = None
        self.paused_until = float("-inf")

    @property
    def unlimited(self) -> bool:
        return self.max_rate <= 0

    def _refill(self, now: float) -> None:
        if self._last is not None and not self.unlimited:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def delay(self, now: float) -> float:
        """Seconds to wait before a token is available (0 when one is)."""
        pause = max(0.0, self.paused_until - now)
        if self.unlimited:
            return pause
        self._refill(now)
        need = 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate
        return max(pause, need)

    def take(self, now: float) -> bool:
        if self.delay(now) > 0:
            return False
        if not self.unlimited:
            self._tokens -= 1.0
        return True

    def on_throttle(self, now: float) -> None:
        if now >= self.paused_until and not self.unlimited:
            self.rate = max(self.min_rate, self.rate / 2)
        self._tokens = 0.0
        self._last = now
        self.paused_until = max(self.paused_until, now + self.pause_s)

    def on_success(self) -> None:
        if not self.unlimited:
            self.rate = min(self.max_rate, self.rate + self.max_rate * self.recover_fraction)
