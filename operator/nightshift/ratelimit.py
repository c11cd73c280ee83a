"""Token buckets: how many requests may go now, given the time (passed in, never read)."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` per second; each request takes one.

    :meth:`take` answers now or never (for what is dropped when over the limit), :meth:`reserve`
    always takes one, borrowing ahead, and says how long to wait first (for what must go out,
    later): successive reservations wait in the order they were made.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float) -> bool:
        """Take a token if one is there (True), else take nothing (False)."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def reserve(self, now: float) -> float:
        """Take a token, borrowing if none is there; the seconds to wait before using it."""
        self._refill(now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def full(self, now: float) -> bool:
        """Whether the bucket is as full as a new one (it can be forgotten)."""
        self._refill(now)
        return self.tokens >= self.burst
