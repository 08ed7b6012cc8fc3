"""One log line per key and interval: a flood (a port scan, a sender we do not serve writing
again and again) costs a line a minute, not a line a message. Pure: the caller gives ``now``."""

from __future__ import annotations

OVERFLOW_KEY = "\0many"


class RepeatLimiter:
    """``allow(key, now)``: None while ``key`` was logged less than ``interval_s`` ago (the
    repeat is counted), else the number of repeats held back since its last line."""

    def __init__(self, interval_s: float = 60.0, max_keys: int = 1000) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._said: dict[str, tuple[float, int]] = {}  # key -> (when logged, repeats since)

    def allow(self, key: str, now: float) -> int | None:
        if key not in self._said and len(self._said) >= self.max_keys:
            self._forget(now)
            if len(self._said) >= self.max_keys:
                key = OVERFLOW_KEY  # many distinct keys at once: they share one line
        said = self._said.get(key)
        if said is not None and now - said[0] < self.interval_s:
            self._said[key] = (said[0], said[1] + 1)
            return None
        self._said[key] = (now, 0)
        return said[1] if said is not None else 0

    def _forget(self, now: float) -> None:
        self._said = {k: v for k, v in self._said.items() if now - v[0] < self.interval_s}
