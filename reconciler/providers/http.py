"""The one retry mechanism for democtl's httpx-based transports, and the client factory.

Owns `RetryPolicy` (bounded, jittered exponential backoff that honours a capped
`Retry-After`), `Network` (the proxies and trusted CAs the environment declares:
HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, SSL_CERT_FILE, SSL_CERT_DIR, as
curl and httpx read them) and `make_client`/`http_client` (an `httpx.Client` that
goes through those proxies and trusts those CAs for the real services, while a
loopback host - an emulator - is always reached directly). `.netrc` is never read:
democtl's credentials come from its own variables. Retried: 429, 5xx, timeouts
and connection errors. Never retried: any other 4xx, which means the request
itself is wrong. Adapters convert what is left into `ProviderError` at their own
edge. A `RequestObserver` given to `http_client` hears of every response (metrics);
it is a separate callback, so the retry path itself knows nothing of it. Imports
httpx, the standard library and `reconciler.providers.budget` (its `Retry-After` parser).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

# the one reading of Retry-After, shared with the budgets and the SDK-based adapters
from reconciler.providers.budget import parse_retry_after

logger = logging.getLogger(__name__)


def is_retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


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
        take: Callable[[], None] | None = None,
        observe: Callable[[httpx.Response], None] | None = None,
    ) -> httpx.Response:
        """Send `request`, retrying what may succeed later; return the last response.

        A retryable status on the last attempt is returned (the caller converts it);
        a transport error on the last attempt is raised. A request that is not
        idempotent (a create) is retried only when it cannot have been processed: a
        refused connection or a 429. After a timeout, a dropped connection or a 5xx it
        may have been, and the caller must look before trying again.

        `take` debits the request budget before every attempt (raising `BudgetSpent`
        sends nothing); `observe` feeds it every answer. A 429 whose wait is longer than
        `max_delay` is returned at once: retrying sooner than asked only burns the bucket
        (Supabase refuses the rest of the minute, Cloudflare the rest of five minutes).
        """
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            if take is not None:
                take()
            try:
                response = client.send(request)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if last or (not idempotent and not isinstance(exc, httpx.ConnectError)):
                    raise
                reason = type(exc).__name__
                pause = self.delay(attempt)
            else:
                if observe is not None:
                    observe(response)
                status = response.status_code
                if not is_retryable_status(status) or last or (not idempotent and status != 429):
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if status == 429 and retry_after is not None and retry_after > self.max_delay:
                    return response
                reason = f"HTTP {response.status_code}"
                pause = self.delay(attempt, retry_after)
                response.close()
            if on_retry is not None:
                on_retry(attempt, reason, pause)
            self.sleep(pause)
        raise AssertionError("unreachable: the loop returns or raises on the last attempt")


# The request extension an adapter names its operation with (`build_request(extensions=...)`);
# httpcore ignores the extensions it does not know.
OPERATION = "democtl.operation"
# Stainless-built SDKs (cloudflare) number their own retries in this request header.
_SDK_RETRY_HEADER = "x-stainless-retry-count"


class RequestObserver(Protocol):
    """Told of each HTTP exchange and retry; must not raise or block (metrics)."""

    def response(self, provider: str, operation: str, status: int) -> None: ...

    def retried(self, provider: str, operation: str, status: int | None, pause: float) -> None:
        """A retry of `operation` after `status` (None: a transport error), `pause` s later."""


def operation_of(request: httpx.Request) -> str:
    """The adapter's name for a request, else method and the path's id-free words.

    `GET /client/v4/zones/<id>/dns_records` becomes `GET zones/dns_records`: ids
    (anything with a digit, or long) would make a label value per resource.
    """
    named = request.extensions.get(OPERATION)
    if isinstance(named, str):
        return named
    words = [
        part
        for part in request.url.path.split("/")
        if part and len(part) <= 24 and part.replace("_", "").replace("-", "").isalpha()
    ]
    return f"{request.method} {'/'.join(w for w in words if w != 'client')}"


def retry_status(reason: str) -> int | None:
    """The status a retry's `reason` (as `RetryPolicy.send` gives it) names; None if none."""
    code = reason.removeprefix("HTTP ")
    return int(code) if code != reason and code.isdigit() else None


def observer_hooks(
    provider: str, observer: RequestObserver
) -> list[Callable[[httpx.Response], None]]:
    """The httpx response hook that reports each exchange (and SDK retries) to `observer`."""

    def on_response(response: httpx.Response) -> None:
        request = response.request
        operation = operation_of(request)
        observer.response(provider, operation, response.status_code)
        try:
            sdk_retry = int(request.headers.get(_SDK_RETRY_HEADER, "0"))
        except ValueError:
            sdk_retry = 0
        if sdk_retry > 0:  # the SDK waited on its own; how long it does not say
            observer.retried(provider, operation, None, 0.0)

    return [on_response]


def is_loopback_host(host: str) -> bool:
    """localhost, *.localhost (RFC 6761) or a loopback address: where the emulators live."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env(environ: Mapping[str, str], name: str) -> str | None:
    # lower case first, as curl and urllib prefer it; empty means unset
    return environ.get(name.lower()) or environ.get(name.upper()) or None


def _no_proxy_name(entry: str) -> str:
    """The host, domain, address or block of a NO_PROXY entry, without port or `*.`."""
    if entry.startswith("["):
        entry = entry[1:].split("]", 1)[0]
    elif entry.count(":") == 1:
        entry = entry.split(":", 1)[0]
    return entry.lstrip("*").lstrip(".")


@dataclass(frozen=True)
class Network:
    """Proxies and trusted CAs, as the environment declares them.

    `no_proxy` entries are host names (`example.com` also covers its subdomains, as
    does `.example.com`), addresses, CIDR blocks, or `*` for every host. Ports in
    entries are ignored. Loopback hosts never go through a proxy.
    """

    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: tuple[str, ...] = ()
    ca_file: str | None = None
    ca_dir: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Network:
        env = os.environ if environ is None else environ
        every = _env(env, "ALL_PROXY")
        no_proxy = tuple(
            entry.strip().lower()
            for entry in (_env(env, "NO_PROXY") or "").split(",")
            if entry.strip()
        )
        return cls(
            http_proxy=_env(env, "HTTP_PROXY") or every,
            https_proxy=_env(env, "HTTPS_PROXY") or every,
            no_proxy=no_proxy,
            ca_file=env.get("SSL_CERT_FILE") or None,
            ca_dir=env.get("SSL_CERT_DIR") or None,
        )

    def bypasses(self, host: str) -> bool:
        """True when `host` is reached directly, without a proxy."""
        host = host.strip("[]").lower().rstrip(".")
        if is_loopback_host(host):
            return True
        for entry in self.no_proxy:
            if entry == "*":
                return True
            name = _no_proxy_name(entry)
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            if host == name or host.endswith("." + name):
                return True
        return False

    def proxy_for(self, url: str) -> str | None:
        """The proxy a request to `url` goes through; None for a direct connection."""
        parts = urlsplit(url)
        if self.bypasses(parts.hostname or ""):
            return None
        return self.https_proxy if parts.scheme == "https" else self.http_proxy

    def verify(self) -> ssl.SSLContext | bool:
        """The CAs to trust: SSL_CERT_FILE/SSL_CERT_DIR when set, else httpx's default."""
        if self.ca_file is None and self.ca_dir is None:
            return True
        return ssl.create_default_context(cafile=self.ca_file, capath=self.ca_dir)

    def mounts(self, verify: ssl.SSLContext | bool) -> dict[str, httpx.BaseTransport | None]:
        """httpx mounts: each scheme through its proxy; loopback and NO_PROXY hosts direct."""
        if "*" in self.no_proxy:
            return {}
        mounts: dict[str, httpx.BaseTransport | None] = {}
        for scheme, proxy in (("http", self.http_proxy), ("https", self.https_proxy)):
            if proxy:
                mounts[f"{scheme}://"] = httpx.HTTPTransport(proxy=proxy, verify=verify)
        if not mounts:
            return {}
        direct = httpx.HTTPTransport(verify=verify)
        patterns = ["all://localhost", "all://*.localhost", "all://127.0.0.1", "all://[::1]"]
        for entry in self.no_proxy:
            name = _no_proxy_name(entry)
            try:
                ipaddress.ip_network(name, strict=False)
            except ValueError:
                patterns += [f"all://{name}", f"all://*.{name}"]
            else:
                if "/" not in name:
                    patterns.append(f"all://[{name}]" if ":" in name else f"all://{name}")
                # a CIDR block cannot be a mount pattern: `proxy_for` honours it
        for pattern in patterns:
            mounts[pattern] = direct
        return mounts


def _hooks(
    event_hooks: Mapping[str, list[Callable[..., Any]]] | None,
    provider: str,
    observer: RequestObserver | None,
) -> dict[str, list[Callable[..., Any]]]:
    """The caller's hooks (a request budget's), then the observer's on each response."""
    hooks = {k: list(v) for k, v in (event_hooks or {}).items()}
    if observer is not None:
        hooks.setdefault("response", []).extend(observer_hooks(provider, observer))
    return hooks


def http_client(
    *,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    network: Network | None = None,
    event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    observer: RequestObserver | None = None,
    provider: str = "",
) -> httpx.Client:
    """An httpx.Client honouring `network` (default: the process environment).

    `trust_env=False` all the same: the proxies and CAs come from `network`, and
    `.netrc` never adds credentials to democtl's requests. `observer` hears of
    every response, as `provider`'s.
    """
    network = Network.from_environ() if network is None else network
    verify = network.verify()
    return httpx.Client(
        base_url=base_url,
        headers=headers or {},
        timeout=httpx.Timeout(timeout),
        verify=verify,
        mounts=network.mounts(verify),
        trust_env=False,
        follow_redirects=False,
        event_hooks=_hooks(event_hooks, provider, observer),
    )


def make_client(
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    network: Network | None = None,
    observer: RequestObserver | None = None,
    provider: str = "",
) -> httpx.Client:
    """A client for one API at `base_url`; see `http_client`."""
    return http_client(
        base_url=base_url,
        headers=headers,
        timeout=timeout,
        network=network,
        observer=observer,
        provider=provider,
    )
