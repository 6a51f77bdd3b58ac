"""A demo's last request, from the Prometheus HTTP API: `PrometheusUsage`.

Owns the `UsageReader` adapter: one instant query per call,
`GET /api/v1/query?query=...&time=<unix>`, read as documented
(https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries and
#expression-query-result-formats): `{"status": "success", "data": {"resultType":
"vector" | "scalar", "result": ...}}`, a vector's samples as `{"metric": {...},
"value": [<unix time>, "<value>"]}`, a scalar as `[<unix time>, "<value>"]`; an error
as `{"status": "error", "errorType": ..., "error": ...}` with 400, 422 or 503.
Anything else (no answer, an error, a result of another type, more than one sample,
a value that is no time) raises ProviderError: a failed read is never a verdict on a
demo. May import httpx, `providers.base` and `providers.http`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import httpx

from reconciler.providers.base import ProviderError, UsageReader
from reconciler.providers.http import Network, http_client


class PrometheusUsage:
    def __init__(
        self, base_url: str, *, timeout: float = 10.0, network: Network | None = None
    ) -> None:
        self._client = http_client(base_url=base_url.rstrip("/"), timeout=timeout, network=network)

    def close(self) -> None:
        self._client.close()

    def _fail(self, message: str, *, retryable: bool = True) -> ProviderError:
        return ProviderError("prometheus", "query", message, retryable=retryable)

    def last_request(self, query: str, at: datetime) -> datetime | None:
        params = {"query": query, "time": f"{at.timestamp():.3f}"}
        try:
            response = self._client.get("/api/v1/query", params=params)
        except httpx.HTTPError as exc:
            raise self._fail(f"no answer ({type(exc).__name__})") from None
        try:
            body: Any = response.json()
        except ValueError:
            raise self._fail(f"answered {response.status_code} without JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            kind = body.get("errorType") if isinstance(body, dict) else None
            raise self._fail(
                f"answered {response.status_code}: {kind or 'error'}: {error or 'no message'}",
                retryable=response.status_code >= 500,
            )
        data = body.get("data") or {}
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return _as_time(result, self)
        if kind != "vector" or not isinstance(result, list):
            raise self._fail(f"a {kind} result, not a vector or scalar", retryable=False)
        if not result:
            return None
        if len(result) > 1:
            raise self._fail(f"{len(result)} series, not one: aggregate the query (max)")
        return _as_time(result[0].get("value"), self)


def _as_time(pair: object, adapter: PrometheusUsage) -> datetime | None:
    if not isinstance(pair, list) or len(pair) != 2:
        raise adapter._fail(f"a sample that is not [time, value]: {pair!r}"[:120], retryable=False)
    try:
        value = float(pair[1])
    except (TypeError, ValueError):
        raise adapter._fail(
            f"a value that is no number: {pair[1]!r}"[:120], retryable=False
        ) from None
    if math.isnan(value) or value <= 0:
        return None  # `vector(0)` or NaN: no request seen
    if math.isinf(value):
        raise adapter._fail("an infinite value, not a time", retryable=False)
    return datetime.fromtimestamp(value, UTC)


def _check(adapter: PrometheusUsage) -> UsageReader:
    return adapter
