"""A loopback stand-in of the Prometheus HTTP API's instant query: a real HTTP server.

`GET /api/v1/query?query=...&time=...` answers in the documented shapes
(https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries):
`{"status": "success", "data": {"resultType": "vector", "result": [...]}}` with one
sample `{"metric": {}, "value": [<time>, "<value>"]}` per series, or
`{"status": "error", "errorType": ..., "error": ...}` with its status code. It does not
evaluate PromQL: it finds the namespace in the query's `namespace="..."` matcher and
answers with `last[namespace]` (the Unix time of that demo's last request), an empty
vector when there is none, or `fail` for every query while set.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from reconciler.local.server import EmulatorServer, Request, Response


def _error(code: int, kind: str, error: str) -> Response:
    return Response(code, {"status": "error", "errorType": kind, "error": error})


class PrometheusStandIn:
    def __init__(self) -> None:
        self.last: dict[str, datetime] = {}
        self.fail: tuple[int, str, str] | None = None  # status, errorType, error
        self.raw: tuple[int, Any] | None = None  # an answer given as is
        self.queries: list[tuple[str, str]] = []  # (query, time)
        self._server = EmulatorServer("prometheus", self._handle)

    def _handle(self, request: Request) -> Response:
        if request.method != "GET" or request.path != "/api/v1/query":
            return Response(404, {"status": "error", "errorType": "not_found"})
        query = request.arg("query", "") or ""
        at = request.arg("time", "") or ""
        self.queries.append((query, at))
        if self.raw is not None:
            return Response(*self.raw)
        if self.fail is not None:
            return _error(*self.fail)
        if not query:
            return _error(400, "bad_data", "no query")
        found = re.search(r'namespace="([^"]+)"', query)
        last = self.last.get(found.group(1)) if found else None
        result = [{"metric": {}, "value": [float(at), f"{last.timestamp():.3f}"]}] if last else []
        return Response(
            200, {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> PrometheusStandIn:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
