"""The demos' health endpoints, as the ingress in front of each demo would answer them.

Owns mapping a Host header (`<id>.portal.<domain>`, `<id>.candidate.<domain>`,
`<id>.api.<domain>`, or whatever the URL patterns are) to a demo id and answering
`GET /health`: 200 when the demo's pods are all ready, 503 otherwise, and the ingress
controller's default-backend 404 for a host it does not know. Readiness comes from
the `is_ready` callable it is given. May import the shared emulator server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from reconciler.local.server import Request, Response


def _host_regex(pattern: str, domain: str) -> re.Pattern[str]:
    text = re.escape(pattern).replace(re.escape("{id}"), r"(?P<id>[a-z0-9-]+)")
    text = text.replace(re.escape("{domain}"), re.escape(domain))
    return re.compile(f"^{text}$")


class HealthEndpoints:
    """`handle` is the health server's request handler."""

    def __init__(
        self, domain: str, url_patterns: Sequence[str], is_ready: Callable[[str], bool]
    ) -> None:
        self._host_patterns = [_host_regex(p, domain) for p in url_patterns]
        self._is_ready = is_ready

    def demo_of_host(self, host: str) -> str | None:
        host = host.split(":", maxsplit=1)[0].lower()
        for pattern in self._host_patterns:
            if match := pattern.match(host):
                return match["id"]
        return None

    def handle(self, request: Request) -> Response:
        demo_id = self.demo_of_host(request.headers.get("host", ""))
        if demo_id is None:
            return Response(404, b"default backend - 404", {"Content-Type": "text/plain"})
        if request.path.rstrip("/") not in {"/health", "/healthz", ""}:
            return Response(404, {"status": "not found"})
        if self._is_ready(demo_id):
            return Response(200, {"status": "ok", "demo": demo_id})
        return Response(503, {"status": "unavailable", "demo": demo_id})
