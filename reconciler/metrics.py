"""Prometheus metrics for `democtl run`: what the cycles did and what demos use now.

Live measurements (CPU, memory, pods) are exported here rather than committed,
so the status files change only when something discrete changes. Uses
prometheus-client with a registry of its own, so tests can read it in isolation.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from reconciler.loop import CycleResult
from reconciler.model import Phase
from reconciler.quantity import parse_quantity


class Exporter:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.cycles = Counter(
            "democtl_cycles", "Reconcile cycles run", ["result"], registry=self.registry
        )
        self.duration = Histogram(
            "democtl_cycle_duration_seconds",
            "Duration of a reconcile cycle",
            registry=self.registry,
        )
        self.demos = Gauge("democtl_demos", "Demos by phase", ["phase"], registry=self.registry)
        self.failures = Counter(
            "democtl_action_failures",
            "Demos whose actions failed in a cycle",
            ["demo"],
            registry=self.registry,
        )
        self.cpu = Gauge(
            "democtl_demo_cpu_cores",
            "CPU used by a demo namespace",
            ["demo"],
            registry=self.registry,
        )
        self.memory = Gauge(
            "democtl_demo_memory_bytes",
            "Memory used by a demo namespace",
            ["demo"],
            registry=self.registry,
        )
        self.pods = Gauge(
            "democtl_demo_pods_ready",
            "Ready pods of a demo namespace",
            ["demo"],
            registry=self.registry,
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def cycle_failed(self) -> None:
        self.cycles.labels(result="error").inc()

    def record(self, result: CycleResult, seconds: float) -> None:
        self.cycles.labels(result="failed" if result.failed else "ok").inc()
        self.duration.observe(seconds)
        for phase in Phase:
            self.demos.labels(phase=phase.value).set(
                sum(1 for s in result.statuses.values() if s.phase is phase)
            )
        for outcome in result.outcomes:
            if outcome.error:
                self.failures.labels(demo=outcome.demo_id).inc()
        for gauge in (self.cpu, self.memory, self.pods):
            gauge.clear()
        for namespace in result.observed.namespaces or ():
            if namespace.demo_id is None:
                continue
            self.cpu.labels(demo=namespace.demo_id).set(float(parse_quantity(namespace.cpu_used)))
            self.memory.labels(demo=namespace.demo_id).set(
                float(parse_quantity(namespace.memory_used))
            )
            self.pods.labels(demo=namespace.demo_id).set(namespace.pods_ready)
