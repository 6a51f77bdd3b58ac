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

import json
import re
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class PrometheusStandIn:
    def __init__(self) -> None:
        self.last: dict[str, datetime] = {}
        self.fail: tuple[int, str, str] | None = None  # status, errorType, error
        self.raw: tuple[int, Any] | None = None  # an answer given as is
        self.queries: list[tuple[str, str]] = []  # (query, time)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/api/v1/query":
                    return self._send(404, {"status": "error", "errorType": "not_found"})
                params = parse_qs(url.query)
                query = params.get("query", [""])[0]
                at = params.get("time", [""])[0]
                owner.queries.append((query, at))
                if owner.raw is not None:
                    return self._send(*owner.raw)
                if owner.fail is not None:
                    code, kind, error = owner.fail
                    return self._send(code, {"status": "error", "errorType": kind, "error": error})
                if not query:
                    return self._send(
                        400, {"status": "error", "errorType": "bad_data", "error": "no query"}
                    )
                found = re.search(r'namespace="([^"]+)"', query)
                last = owner.last.get(found.group(1)) if found else None
                result = (
                    [{"metric": {}, "value": [float(at), f"{last.timestamp():.3f}"]}]
                    if last
                    else []
                )
                self._send(
                    200, {"status": "success", "data": {"resultType": "vector", "result": result}}
                )

            def _send(self, code: int, body: Any) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> PrometheusStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
