"""HTTP health probes of a demo's portal, candidate site and API gateway.

Owns `HttpxProber`, the `HttpProber` adapter: one GET per call, True on 2xx,
False on any other answer or a refused connection, None when nothing answered
(a timeout, a dropped connection) or the answer was 429, which says "later", not
"unhealthy": a health verdict needs an answer. A probe without an answer is tried
once more at once (`NO_ANSWER_ATTEMPTS`): a demo becomes ready only when all its
probes pass in one cycle, and at 20 % faults one lost answer among three probes held
a ready fleet back cycle after cycle. So is a 502/503/504 (an ingress's "upstream
unavailable"; the second answer is the verdict); any other answer is the verdict at once.
In local mode `resolve` maps a public host name to the
emulator's loopback base URL, and the request keeps the public name in its Host
header, the way an ingress controller routes it. The environment's proxies and
CAs apply to public hosts (`providers.http.Network`); loopback is reached directly.
May import httpx, `providers.base` and `providers.http`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from reconciler.providers.base import HttpProber
from reconciler.providers.http import Network, http_client

log = logging.getLogger(__name__)


NO_ANSWER_ATTEMPTS = 2
# a gateway's "upstream unavailable" is tried once more too: a demo becomes ready on one
# success, as a Kubernetes readiness probe does (successThreshold 1,
# kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/)
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


class HttpxProber:
    def __init__(
        self,
        *,
        resolve: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        network: Network | None = None,
    ) -> None:
        """`resolve` maps `host`, `*.suffix` (any host ending in `.suffix`) or `*` (any
        other host) to a base URL."""
        self.resolve = dict(resolve or {})
        self._client = http_client(timeout=timeout, network=network)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpxProber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _base_for(self, host: str) -> str | None:
        if host in self.resolve:
            return self.resolve[host]
        for pattern, base in self.resolve.items():
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return base
        return self.resolve.get("*")

    def target(self, url: str) -> tuple[str, dict[str, str]]:
        """The URL to request and the headers to send for a probe of `url`."""
        if "://" not in url:
            url = f"https://{url}"
        parts = urlsplit(url)
        path = parts.path if parts.path not in {"", "/"} else "/health"
        if parts.query:
            path = f"{path}?{parts.query}"
        host = parts.hostname or ""
        base = self._base_for(host)
        if base is None:
            return f"{parts.scheme}://{parts.netloc}{path}", {}
        return f"{base.rstrip('/')}{path}", {"Host": host}

    def probe(self, url: str) -> bool | None:
        verdict, status = None, None
        for _ in range(NO_ANSWER_ATTEMPTS):
            verdict, status = self._probe_once(url)
            if verdict is not None and status not in RETRIED_STATUSES:
                break
        return verdict

    def _probe_once(self, url: str) -> tuple[bool | None, int | None]:
        request_url, headers = self.target(url)
        host = headers.get("Host") or urlsplit(request_url).hostname
        try:
            response = self._client.get(request_url, headers=headers)
        except httpx.ConnectError as exc:
            log.info("probe %s: %s", host, type(exc).__name__)
            return False, None  # refused or unresolvable: nothing serves the host
        except httpx.HTTPError as exc:
            log.info("probe %s: no answer: %s", host, type(exc).__name__)
            return None, None
        if response.status_code == 429:
            log.info("probe %s: 429, no verdict", host)
            return None, 429
        healthy = response.is_success
        log.debug("probe %s: %d", host, response.status_code)
        return healthy, response.status_code


def _conforms(prober: HttpxProber) -> HttpProber:
    return prober  # mypy checks that the adapter is an HttpProber
