"""Fixed-window rate limits for the emulators, one window per key, as the vendors count.

Owns `FixedWindowLimiter`: the first request of a key opens its window; `limit`
requests pass in it; once one more arrives the key is blocked for the rest of the
window, every further request refused, and the next request after it opens a new
window. Both vendors democtl talks to document exactly this shape:

- Supabase Management API (supabase/supabase, apps/docs/content/_partials/
  api_rate_limits.mdx, https://supabase.com/docs/reference/api/introduction): "120
  requests, 1 minute, per user, per project or organization, per endpoint"; "When you
  exceed this rate limit, all further API calls return a 429 Too Many Requests
  response for the remainder of the minute"; X-RateLimit-Limit/Remaining/Reset (the
  seconds until the reset) on every response.
- Cloudflare API (https://developers.cloudflare.com/fundamentals/api/reference/limits):
  "1,200 requests per five minute period per user ... If you exceed this limit, all
  API calls for the next five minutes will be blocked"; `Ratelimit: "default";r=..;t=..`
  and `Ratelimit-Policy: "default";q=..;w=..` on every response, `Retry-After` on a 429.

The clock is injected: the emulators' time is the tests' time. Standard library only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """One request's fate and what its answer's headers say about its key's window."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # whole seconds until the window ends, at least 1


@dataclass
class _Window:
    start: float
    count: int = 0


class FixedWindowLimiter:
    """`limit` requests per `window` seconds per key; over it, refused until the window ends."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.clock = clock
        self._windows: dict[Hashable, _Window] = {}
        self._lock = threading.Lock()

    def hit(self, key: Hashable) -> Verdict:
        """Count one request against `key` and say whether it passes."""
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window.start >= self.window or now < window.start:
                window = self._windows[key] = _Window(start=now)
                self._forget_closed(now)
            window.count += 1
            allowed = window.count <= self.limit
            remaining = max(0, self.limit - window.count)
            reset = max(1, math.ceil(window.start + self.window - now))
        return Verdict(allowed, self.limit, remaining, reset)

    def _forget_closed(self, now: float) -> None:
        # keys are many (one per project and endpoint): keep only open windows
        if len(self._windows) > 4096:
            for key in [k for k, w in self._windows.items() if now - w.start >= self.window]:
                del self._windows[key]
