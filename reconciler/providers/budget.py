"""democtl's own account of the providers' rate limits: request budgets and a QPS limiter.

Owns `RequestBudget` (one bucket per key, fed by what the answers' headers say:
Supabase's `X-RateLimit-Limit/Remaining/Reset`, Cloudflare's `Ratelimit` and
`Ratelimit-Policy`; a request the bucket knows will be refused is not sent, and the
caller leaves it for a later cycle), `BudgetSpent` (that refusal) and `TokenBucket`
(client-side QPS with a burst, as client-go's `flowcontrol` token bucket, which waits
instead of refusing), and `parse_retry_after`, the one reading of `Retry-After` every
adapter shares. Clocks and sleeps are injected. Standard library only.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        reference = time.time() if now is None else now
        seconds = when.timestamp() - reference
    return max(0.0, seconds)


class BudgetSpent(Exception):
    """The bucket `key` has no request left: `wait` seconds until it refills."""

    def __init__(self, key: Hashable, wait: float) -> None:
        self.key = key
        self.wait = max(0.0, wait)
        # no seconds in the message: a status that quotes it stays the same bytes
        super().__init__(f"the request budget of {_name(key)} is spent")


def _name(key: Hashable) -> str:
    return " ".join(str(part) for part in key) if isinstance(key, tuple) else str(key)


@dataclass
class _Bucket:
    remaining: int
    reset_at: float
    in_flight: int = 0


class RequestBudget:
    """What is left in each rate-limit bucket, as far as this process knows.

    `limit`/`window` are the documented quota, used for a bucket no answer has described
    yet; the answers' headers then correct it (another process using the same token
    shows up there). A bucket is debited when a request is sent, so concurrent workers
    never overshoot it between an answer and the next.
    """

    def __init__(
        self,
        *,
        limit: int | None = None,
        window: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.wall_clock = wall_clock  # what a Retry-After HTTP-date is measured against
        self.deferred = 0  # requests not sent because their bucket was spent
        self._buckets: dict[Hashable, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: Hashable) -> None:
        """Debit one request from `key`, or raise `BudgetSpent` without debiting."""
        now = self.clock()
        with self._lock:
            bucket = self._current(key, now)
            if bucket is None:
                return
            if bucket.remaining <= 0:
                self.deferred += 1
                raise BudgetSpent(key, bucket.reset_at - now)
            bucket.remaining -= 1
            bucket.in_flight += 1

    def left(self, key: Hashable) -> int | None:
        """Requests left in `key` now; None when nothing is known of it."""
        with self._lock:
            bucket = self._current(key, self.clock())
            return None if bucket is None else bucket.remaining

    def refill_in(self, key: Hashable) -> float:
        """Seconds until `key`'s window ends (0 when nothing is known of it)."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            return max(0.0, bucket.reset_at - now) if bucket is not None else 0.0

    def observe(
        self, key: Hashable, *, remaining: int, reset: float, refused: bool = False
    ) -> None:
        """An answer said `remaining` requests are left for `reset` seconds (a 429: none)."""
        now = self.clock()
        with self._lock:
            bucket = self._current(key, now)
            if bucket is not None and bucket.in_flight > 0:
                bucket.in_flight -= 1
            reset_at = now + max(0.0, reset)
            if refused:
                self._buckets[key] = _Bucket(0, reset_at, bucket.in_flight if bucket else 0)
            elif bucket is None or reset_at > bucket.reset_at + 1.5:
                # a window the server opened after ours ended: its count is the truth,
                # less what is on its way there
                in_flight = bucket.in_flight if bucket else 0
                self._buckets[key] = _Bucket(max(0, remaining - in_flight), reset_at, in_flight)
            else:
                bucket.remaining = min(bucket.remaining, remaining)
                bucket.reset_at = reset_at

    def observe_headers(self, key: Hashable, headers: Mapping[str, str], status: int) -> None:
        """Feed the bucket from an answer's rate-limit headers (either vendor's form)."""
        headers = {k.lower(): v for k, v in headers.items()}
        quota = parse_quota(headers)
        if quota is None:
            if status == 429:
                retry = self._retry_after(headers)
                # `Retry-After: 0` means now (RFC 9110 10.2.3), not "no answer": not `or`
                wait = retry if retry is not None else (self.window or 60.0)
                self.observe(key, remaining=0, reset=wait, refused=True)
            return
        remaining, reset = quota
        if status == 429:
            retry = self._retry_after(headers)
            reset = retry if retry is not None else reset
        self.observe(key, remaining=remaining, reset=reset, refused=status == 429)

    def _retry_after(self, headers: Mapping[str, str]) -> float | None:
        # an HTTP-date read as no header spent a whole window, even for a date gone by
        return parse_retry_after(headers.get("retry-after"), now=self.wall_clock())

    def _current(self, key: Hashable, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None and now >= bucket.reset_at:
            bucket = None  # its window is over
        if bucket is None and self.limit is not None and self.window is not None:
            # nothing known: assume a fresh documented quota, for a whole window
            bucket = _Bucket(self.limit, now + self.window)
        if bucket is not None:
            self._buckets[key] = bucket
        return bucket


_RATELIMIT = re.compile(r"\br=(\d+).*?\bt=(\d+)")


def parse_quota(headers: Mapping[str, str]) -> tuple[int, float] | None:
    """(remaining, seconds to reset) from `X-RateLimit-Remaining`/`-Reset` (Supabase) or
    `Ratelimit: "default";r=..;t=..` (Cloudflare); None when the answer says neither."""
    lower = {k.lower(): v for k, v in headers.items()}
    remaining = _number(lower.get("x-ratelimit-remaining"))
    reset = _number(lower.get("x-ratelimit-reset"))
    if remaining is not None and reset is not None:
        return int(remaining), reset
    match = _RATELIMIT.search(lower.get("ratelimit", ""))
    if match:
        return int(match[1]), float(match[2])
    return None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class TokenBucket:
    """`qps` tokens a second, at most `burst` saved: client-go's default is 5 and 10
    (k8s.io/client-go/rest: DefaultQPS, DefaultBurst). `acquire` waits for a token."""

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("a QPS limit needs qps > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self.waited = 0.0  # seconds spent waiting for tokens, for the benchmarks
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.qps)
            self._at = now
            self._tokens -= 1  # reserved now; a negative balance is the wait
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
            self.waited += wait
        if wait > 0:
            self.sleep(wait)
