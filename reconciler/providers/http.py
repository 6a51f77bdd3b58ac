"""The one retry mechanism for democtl's httpx-based transports, and the client factory.

Owns `RetryPolicy` (bounded, jittered exponential backoff that honours a capped
`Retry-After`) and `make_client` (an `httpx.Client` that ignores proxy settings in
the environment, so loopback emulators are never captured by a proxy). Retried:
429, 5xx, timeouts and connection errors. Never retried: any other 4xx, which
means the request itself is wrong. Adapters convert what is left into
`ProviderError` at their own edge. Imports httpx and the standard library only.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import httpx

logger = logging.getLogger(__name__)


def is_retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


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


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with jittered exponential backoff.

    `attempts` counts every try (1 = no retry). `sleep` is injected so tests run
    without waiting; `rng` makes the jitter reproducible.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5  # share of the delay drawn at random, 0..1
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    @classmethod
    def no_wait(cls, attempts: int = 4) -> RetryPolicy:
        """Same retries, no sleeping: for tests and benchmarks."""
        return cls(attempts=attempts, sleep=lambda _s: None)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The pause before retry number `attempt` (1-based), capped at `max_delay`."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        backoff = min(self.base_delay * 2.0 ** (attempt - 1), self.max_delay)
        spread = backoff * self.jitter
        return max(0.0, backoff - spread + self.rng.random() * spread)

    def send(
        self,
        client: httpx.Client,
        request: httpx.Request,
        *,
        on_retry: Callable[[int, str, float], None] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send `request`, retrying what may succeed later; return the last response.

        A retryable status on the last attempt is returned (the caller converts it);
        a transport error on the last attempt is raised. A request that is not
        idempotent (a create) is retried only when it cannot have been processed: a
        refused connection or a 429. After a timeout, a dropped connection or a 5xx it
        may have been, and the caller must look before trying again.
        """
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                response = client.send(request)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if last or (not idempotent and not isinstance(exc, httpx.ConnectError)):
                    raise
                reason = type(exc).__name__
                pause = self.delay(attempt)
            else:
                status = response.status_code
                if not is_retryable_status(status) or last or (not idempotent and status != 429):
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                reason = f"HTTP {response.status_code}"
                pause = self.delay(attempt, retry_after)
                response.close()
            if on_retry is not None:
                on_retry(attempt, reason, pause)
            self.sleep(pause)
        raise AssertionError("unreachable: the loop returns or raises on the last attempt")


def make_client(
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> httpx.Client:
    """An httpx.Client that ignores HTTP(S)_PROXY/NETRC in the environment (`trust_env=False`)."""
    return httpx.Client(
        base_url=base_url,
        headers=headers or {},
        timeout=httpx.Timeout(timeout),
        trust_env=False,
        follow_redirects=False,
    )
