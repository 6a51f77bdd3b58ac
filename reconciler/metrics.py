"""Prometheus metrics: what the cycles did, what the providers answered, what demos use now.

Owns `Exporter` (every democtl metric, in a `CollectorRegistry` of its own, so
nothing leaks between runs or tests), its `RequestObserver` side (the
transport's callback, `providers.http`), and the three ways out: the text
format (`text`, `write_file`), a push to a Pushgateway (`push`), and the
`/metrics` + `/healthz` server of `democtl run` (`serve`). Live measurements
(CPU, memory, pods) are exported here rather than committed, so the status files
change only when something discrete changes. Names follow the Prometheus naming
rules (https://prometheus.io/docs/practices/naming/): `democtl_` prefix, base
units (seconds, bytes), `_total` on counters. May import the loop's result, the
model and capacity; never a provider or git.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway
from prometheus_client.exposition import choose_encoder, generate_latest

from reconciler.capacity import capacity_report, live_profiles
from reconciler.loop import CycleResult
from reconciler.model import Phase
from reconciler.quantity import parse_quantity

# A demo is created in minutes (a Supabase project takes 1-3); queued ones wait hours.
READY_BUCKETS = (30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
CYCLE_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
ACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180)
PUSH_JOB = "democtl"


class Exporter:
    """Every democtl metric, fed after each cycle (`record`) and by the transport (observer).

    `monotonic` is the clock `/healthz` measures how long cycles have failed with.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        r = self.registry
        self.cycles = Counter(
            "democtl_cycles", "Reconcile cycles run, by outcome", ["outcome"], registry=r
        )
        self.cycle_duration = Histogram(
            "democtl_cycle_duration_seconds",
            "Duration of a reconcile cycle",
            ["outcome"],
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "democtl_cycle_last_success_timestamp_seconds",
            "When the last cycle that completed ran (the cycle's clock, Unix time)",
            registry=r,
        )
        self.demos = Gauge(
            "democtl_demos",
            "Demos by phase, type and profile",
            ["phase", "type", "profile"],
            registry=r,
        )
        self.expiry = Gauge(
            "democtl_demo_expiry_seconds",
            "Seconds until a demo expires, at the last cycle (negative: overdue)",
            ["demo"],
            registry=r,
        )
        self.actions = Histogram(
            "democtl_action_duration_seconds",
            "Actions applied by kind and outcome (ok, waiting, rate_limited, error)",
            ["kind", "outcome"],
            buckets=ACTION_BUCKETS,
            registry=r,
        )
        self.failures = Counter(
            "democtl_demo_failures",
            "Cycles in which a demo's actions failed",
            ["demo"],
            registry=r,
        )
        self.time_to_ready = Histogram(
            "democtl_demo_time_to_ready_seconds",
            "From a demo's file landing (its first commit) to the demo first being ready",
            ["type", "profile"],
            buckets=READY_BUCKETS,
            registry=r,
        )
        self.queue = Gauge(
            "democtl_queue_length", "Demos waiting for capacity (pending)", registry=r
        )
        self.capacity_demos = Gauge(
            "democtl_capacity_demos",
            "Demo slots used and free under capacity.maxConcurrentDemos",
            ["state"],
            registry=r,
        )
        self.capacity_cpu = Gauge(
            "democtl_capacity_cpu_cores",
            "Allocatable CPU held by live demos' quotas, and free",
            ["state"],
            registry=r,
        )
        self.capacity_memory = Gauge(
            "democtl_capacity_memory_bytes",
            "Allocatable memory held by live demos' quotas, and free",
            ["state"],
            registry=r,
        )
        self.requests = Counter(
            "democtl_provider_requests",
            "HTTP requests to a provider's API, by operation and status code",
            ["provider", "operation", "code"],
            registry=r,
        )
        self.retries = Counter(
            "democtl_provider_retries",
            "Requests sent again after a 429, a 5xx or a transport error",
            ["provider", "operation"],
            registry=r,
        )
        self.rate_limited = Counter(
            "democtl_provider_rate_limited",
            "Responses with HTTP 429 (Too Many Requests)",
            ["provider", "operation"],
            registry=r,
        )
        self.retry_after_waited = Counter(
            "democtl_provider_retry_after_seconds",
            "Seconds waited before retrying a 429, as Retry-After asked (capped)",
            ["provider"],
            registry=r,
        )
        self.cpu = Gauge(
            "democtl_demo_cpu_cores", "CPU used by a demo namespace", ["demo"], registry=r
        )
        self.memory = Gauge(
            "democtl_demo_memory_bytes", "Memory used by a demo namespace", ["demo"], registry=r
        )
        self.pods = Gauge(
            "democtl_demo_pods_ready", "Ready pods of a demo namespace", ["demo"], registry=r
        )
        # from the usage read (`usage:` settings), never committed: a series per demo the
        # cycle asked about that has served a request in the query's window
        self.last_request = Gauge(
            "democtl_demo_last_request_timestamp_seconds",
            "When a demo last served a request (Unix time), as the usage query read it",
            ["demo"],
            registry=r,
        )

    # --- the transport's callback (providers.http.RequestObserver) ------------------------

    def response(self, provider: str, operation: str, status: int) -> None:
        self.requests.labels(provider=provider, operation=operation, code=str(status)).inc()
        if status == 429:
            self.rate_limited.labels(provider=provider, operation=operation).inc()

    def retried(self, provider: str, operation: str, status: int | None, pause: float) -> None:
        self.retries.labels(provider=provider, operation=operation).inc()
        if status == 429:
            self.retry_after_waited.labels(provider=provider).inc(pause)

    # --- after each cycle ------------------------------------------------------------------

    def cycle_failed(self, seconds: float | None = None) -> None:
        """A cycle that raised (unreadable state, a push that kept failing, a setup error)."""
        self.cycles.labels(outcome="error").inc()
        if seconds is not None:
            self.cycle_duration.labels(outcome="error").observe(seconds)
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self.monotonic()

    def record(self, result: CycleResult, seconds: float) -> None:
        """A cycle that ran to its end: `failed` when some demo's action failed."""
        outcome = "failed" if result.failed else "ok"
        self.cycles.labels(outcome=outcome).inc()
        self.cycle_duration.labels(outcome=outcome).observe(seconds)
        with self._lock:
            self._failing_since = None
        if result.now is not None:
            self.last_success.set(result.now.timestamp())
        self._record_demos(result)
        self._record_actions(result)
        self._record_capacity(result)
        self._record_usage(result)

    def _record_demos(self, result: CycleResult) -> None:
        self.demos.clear()
        counts: dict[tuple[str, str, str], int] = {}
        for status in result.statuses.values():
            key = (status.phase.value, status.demoType, status.profile)
            counts[key] = counts.get(key, 0) + 1
        for (phase, demo_type, profile), count in sorted(counts.items()):
            self.demos.labels(phase=phase, type=demo_type, profile=profile).set(count)
        self.expiry.clear()
        if result.now is not None:
            for demo_id, status in sorted(result.statuses.items()):
                remaining = (status.expiresAt - result.now).total_seconds()
                self.expiry.labels(demo=demo_id).set(remaining)
        for demo_id, status in sorted(result.statuses.items()):
            before = result.previous.get(demo_id)
            landed = result.created_at.get(demo_id)
            first_ready = status.phase is Phase.READY and (
                before is None or before.phase in {Phase.PENDING, Phase.CREATING, Phase.FAILED}
            )
            if first_ready and landed is not None and result.now is not None:
                self.time_to_ready.labels(type=status.demoType, profile=status.profile).observe(
                    max(0.0, (result.now - landed).total_seconds())
                )

    def _record_actions(self, result: CycleResult) -> None:
        for outcome in result.outcomes:
            for timing in outcome.timings:
                self.actions.labels(kind=timing.kind.value, outcome=timing.outcome).observe(
                    timing.seconds
                )
            if outcome.error and not outcome.rate_limited:
                self.failures.labels(demo=outcome.demo_id).inc()

    def _record_capacity(self, result: CycleResult) -> None:
        statuses = result.statuses
        self.queue.set(sum(1 for s in statuses.values() if s.phase is Phase.PENDING))
        settings = result.settings
        if settings is None:
            return
        report = capacity_report(settings, live_profiles({}, statuses))
        self.capacity_demos.labels(state="used").set(report.live_demos)
        self.capacity_demos.labels(state="free").set(
            max(report.max_concurrent - report.live_demos, 0)
        )
        self.capacity_cpu.labels(state="used").set(float(report.used_cpu))
        self.capacity_cpu.labels(state="free").set(float(report.free_cpu))
        self.capacity_memory.labels(state="used").set(float(report.used_memory))
        self.capacity_memory.labels(state="free").set(float(report.free_memory))

    def _record_usage(self, result: CycleResult) -> None:
        for gauge in (self.cpu, self.memory, self.pods, self.last_request):
            gauge.clear()
        for demo_id, when in sorted(result.observed.last_accessed.items()):
            if when is not None:  # None: no request in the window, which is no timestamp
                self.last_request.labels(demo=demo_id).set(when.timestamp())
        for namespace in result.observed.namespaces or ():
            if namespace.demo_id is None:
                continue
            self.cpu.labels(demo=namespace.demo_id).set(float(parse_quantity(namespace.cpu_used)))
            self.memory.labels(demo=namespace.demo_id).set(
                float(parse_quantity(namespace.memory_used))
            )
            self.pods.labels(demo=namespace.demo_id).set(namespace.pods_ready)

    # --- health ----------------------------------------------------------------------------

    def healthy(self, unhealthy_after: float) -> bool:
        """False once cycles have kept failing (raising) for longer than `unhealthy_after` s.

        A demo whose actions fail does not count: restarting democtl would not help it,
        and a liveness probe that restarts on it would stop every other demo's cycles.
        """
        with self._lock:
            since = self._failing_since
        return since is None or self.monotonic() - since <= unhealthy_after

    # --- ways out --------------------------------------------------------------------------

    def text(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of every metric."""
        return generate_latest(self.registry)

    def write_file(self, path: Path) -> None:
        """The text format to `path`, replaced whole (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(self.text())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def push(self, gateway: str, job: str = PUSH_JOB, timeout: float = 30.0) -> None:
        """PUT every metric to a Pushgateway as group `job` (replacing the group's last push).

        The Pushgateway's API: `PUT /metrics/job/<job>` replaces all metrics of the group
        (https://github.com/prometheus/pushgateway#put-method). Raises OSError on failure.
        """
        push_to_gateway(gateway, job=job, registry=self.registry, timeout=timeout)

    def serve(
        self, port: int, addr: str = "127.0.0.1", *, unhealthy_after: float = 900.0
    ) -> ThreadingHTTPServer:
        """Serve `/metrics` and `/healthz` from a daemon thread; returns the server."""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = self.path.split("?", 1)[0]
                if route == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._reply(200, encoder(exporter.registry), content_type)
                elif route == "/healthz":
                    ok = exporter.healthy(unhealthy_after)
                    body = b"ok\n" if ok else b"cycles have been failing\n"
                    self._reply(200 if ok else 503, body, "text/plain; charset=utf-8")
                else:
                    self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain")

            def _reply(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # a scrape every 15s is not news

        server = ThreadingHTTPServer((addr, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server
