"""The emulated cluster put together: store, API server, controllers, health, two loopback servers.

Owns the `KubernetesEmulator` callers use: it wires the object store to the API
server, runs the controllers it plays (GitOps sync, then workloads and quotas when
an object changed) before every answer, serves the API and the health endpoints on
loopback, and offers the test and operator hooks and `inspect` for `democtl local
inspect`. May import the other modules of this package and the shared emulator
server; never an adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.local.kubernetes import workloads
from reconciler.local.kubernetes.access import AccessPolicy
from reconciler.local.kubernetes.apiserver import ApiServer, route_of, status_body
from reconciler.local.kubernetes.gitops import GitOpsController
from reconciler.local.kubernetes.health import HealthEndpoints
from reconciler.local.kubernetes.quota import QuotaController
from reconciler.local.kubernetes.store import ObjectStore, labels_of, object_key
from reconciler.local.server import EmulatorServer, Faults, Request, Response

REDACTED = "REDACTED"
DEFAULT_SECRET_NAME = "supabase-credentials"  # noqa: S105 - a name, not a secret


def _system_clock() -> datetime:
    # The emulator stands in for a remote server with its own clock.
    return datetime.now(UTC).replace(microsecond=0)


class KubernetesEmulator:
    """The API handler, the GitOps stand-in, and their two loopback servers."""

    def __init__(
        self,
        state_dir: Path,
        *,
        source: Path | None = None,
        faults: Faults | None = None,
        domain: str = "splits.network",
        url_patterns: Sequence[str] = (
            "{id}-portal.{domain}",
            "{id}-candidate.{domain}",
            "{id}-api.{domain}",
        ),
        secret_name: str = DEFAULT_SECRET_NAME,
        argo_namespace: str = "argocd",
        gitops: str = "flux",
        nodes: Mapping[str, tuple[str, str]] | None = None,
        clock: Callable[[], datetime] = _system_clock,
        access: AccessPolicy | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.source = Path(source) if source is not None else None
        self.secret_name = secret_name
        self.argo_namespace = argo_namespace
        self.clock = clock
        self._faults = faults
        self.store = ObjectStore(self.state_dir, clock)
        self.gitops = GitOpsController(
            self.store, self.source, argo_namespace=argo_namespace, gitops=gitops, clock=clock
        )
        self.workloads = workloads.WorkloadController(
            self.store, secret_name=secret_name, clock=clock
        )
        self.quotas = QuotaController(self.store)
        # who may do what, the CRDs, the namespaces the cluster had before democtl
        self.access = access or AccessPolicy()
        self.api = ApiServer(self.store, self._reconcile_locked, self.access)
        self.health = HealthEndpoints(domain, url_patterns, self.demo_ready)
        self._fresh = True  # the first controller pass looks at everything
        if nodes is not None:
            self._set_nodes(nodes)
            self.store.save()
        elif not self.store.count("nodes"):
            self._set_nodes({"democtl-local": ("64", "256Gi")})  # saved with the next change
        self.api_server: EmulatorServer | None = None
        self.health_server: EmulatorServer | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> KubernetesEmulator:
        with self.store.lock:
            if self.store.journal_pending():
                # The serving process is the one writer: it folds the journal it found
                # into the snapshot, so each command starts from one file.
                self.store.compact()
            # Catch up with rendered/ before serving: at thousands of demos the first
            # parse and controller pass take seconds, which no client's first request
            # should wait out (the adapter times out at 15 s).
            self._reconcile_locked()
        self.api_server = EmulatorServer(
            "kubernetes",
            self.handle,
            faults=self._faults,
            error_body=status_body,
            route_of=self.route_of,
        )
        self.health_server = EmulatorServer(
            "kubernetes-health", self.handle_health, error_body=lambda c, m: {"status": m}
        )
        self.api_server.start()
        self.health_server.start()
        return self

    def stop(self) -> None:
        # Each server's shutdown waits out its poll interval; wait for both at once.
        stoppers = [
            threading.Thread(target=server.stop, name=f"{server.name}-stop")
            for server in (self.api_server, self.health_server)
            if server is not None
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        with self.store.lock:
            self.gitops.close()  # its inotify descriptor; a later sync opens another

    def __enter__(self) -> KubernetesEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self.api_server is None:
            raise RuntimeError("the Kubernetes emulator is not started")
        return self.api_server.url

    @property
    def health_url(self) -> str:
        if self.health_server is None:
            raise RuntimeError("the Kubernetes emulator is not started")
        return self.health_server.url

    @property
    def state_file(self) -> Path:
        return self.store.state_file

    # --- requests and controllers ---------------------------------------------------------

    def handle(self, request: Request) -> Response:
        return self.api.handle(request)

    def route_of(self, request: Request) -> str:
        """Counter key: `LIST pods`, `GET secrets`, `PATCH secrets`, ..."""
        return route_of(request)

    def sync(self) -> None:
        """Make the cluster match `rendered/` of the source tree, as Flux or Argo CD would."""
        with self.store.lock:
            self._reconcile_locked()

    def _reconcile_locked(self) -> None:
        before = self.store.version
        self.gitops.sync()
        events = self.store.drain_events()
        due = self.workloads.due(self.clock())
        if events or due or self._fresh:
            # Workloads follow objects, and only the objects that changed: when none
            # did there is nothing to follow, and one Secret write concerns one demo.
            # A release's requeue time (its interval) is the one change time makes.
            first = self._fresh
            self._fresh = False
            self.workloads.refresh(None if first else events, due)
            events += self.store.drain_events()
            touched = {name if plural == "namespaces" else ns for plural, ns, name in events}
            self.quotas.refresh(None if first else touched)
            self.store.drain_events()  # the controllers' own changes concern no one else
        if self.store.version != before:
            self.store.save()

    release_values = staticmethod(workloads.release_values)

    def _set_nodes(self, nodes: Mapping[str, tuple[str, str]]) -> None:
        # put keeps an unchanged node as it is, so starting the emulator again on the
        # same settings moves no resourceVersion (a `plan --local` changes nothing).
        present = {object_key(None, n["metadata"]["name"]) for n in self.store.all("nodes")}
        for key in sorted(present - {object_key(None, name) for name in nodes}):
            self.store.delete("nodes", key)
        for name, (cpu, memory) in sorted(nodes.items()):
            self.store.put(
                "nodes",
                {
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                    "status": {
                        "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                        "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                },
            )

    # --- test and operator hooks ----------------------------------------------------------

    def record_restarts(self, namespace: str, service: str, restarts: int) -> None:
        """Make every pod of `service` report `restarts` container restarts (a crash loop)."""
        with self.store.lock:
            self.workloads.record_restarts(namespace, service, restarts)
            self.store.save()

    def fail_release(
        self,
        namespace: str,
        name: str,
        times: int,
        message: str = "timed out waiting for the condition",
    ) -> None:
        """Make the next `times` attempts (install, upgrade or sync) of a release fail.

        `namespace`/`name` are the HelmRelease's (under Argo CD, the Application's) own;
        the release need not exist yet."""
        with self.store.lock:
            plural = "applications" if self.gitops.gitops == "argo" else "helmreleases"
            self.workloads.fail_release(plural, object_key(namespace, name), times, message)

    def add_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        """Create a namespace outside of rendered/ (a foreign or hand-made one)."""
        with self.store.lock:
            self.store.put(
                "namespaces",
                {"metadata": {"name": name, "labels": dict(labels)}, "status": {"phase": "Active"}},
            )
            self.store.save()

    def secret_data(self) -> list[dict[str, str]]:
        """The `data` of every Secret held (base64 values; tests look for leaks)."""
        with self.store.lock:
            return [dict(s.get("data") or {}) for s in self.store.all("secrets")]

    # --- health endpoints -----------------------------------------------------------------

    def demo_of_host(self, host: str) -> str | None:
        return self.health.demo_of_host(host)

    def demo_ready(self, demo_id: str) -> bool:
        """All pods of the demo's namespace ready (and at least one)."""
        with self.store.lock:
            self._reconcile_locked()
            entry = self.store.synced.get(demo_id)
            if entry is None:
                return False
            return self.workloads.namespace_ready(entry["namespace"])

    def handle_health(self, request: Request) -> Response:
        return self.health.handle(request)

    # --- inspection -----------------------------------------------------------------------

    def inspect(self) -> dict[str, Any]:
        """The cluster as data for `democtl local inspect`; Secret values are REDACTED."""
        with self.store.lock:
            objects = self.store.all
            namespaces = [
                {
                    "name": ns["metadata"]["name"],
                    "labels": labels_of(ns),
                    "phase": ns.get("status", {}).get("phase"),
                }
                for ns in objects("namespaces")
            ]
            pods = [
                {
                    "namespace": p["metadata"]["namespace"],
                    "name": p["metadata"]["name"],
                    "phase": p["status"]["phase"],
                    "ready": all(c.get("ready") for c in p["status"]["containerStatuses"]),
                    "restarts": sum(
                        int(c.get("restartCount", 0)) for c in p["status"]["containerStatuses"]
                    ),
                }
                for p in objects("pods")
            ]
            secrets = [
                {
                    "namespace": s["metadata"]["namespace"],
                    "name": s["metadata"]["name"],
                    "labels": labels_of(s),
                    "annotations": dict(s["metadata"].get("annotations") or {}),
                    "type": s.get("type", "Opaque"),
                    "data": dict.fromkeys(sorted(s.get("data") or {}), REDACTED),
                    "resourceVersion": s["metadata"]["resourceVersion"],
                }
                for s in objects("secrets")
            ]
            releases = [
                {
                    "kind": obj["kind"],
                    "namespace": obj["metadata"]["namespace"],
                    "name": obj["metadata"]["name"],
                    "status": obj.get("status", {}),
                }
                for plural in workloads.RELEASES
                for obj in objects(plural)
            ]
            kustomizations = [
                {
                    "namespace": k["metadata"]["namespace"],
                    "name": k["metadata"]["name"],
                    "status": k.get("status", {}),
                }
                for k in objects("kustomizations")
            ]
            quotas = [
                {
                    "namespace": q["metadata"]["namespace"],
                    "name": q["metadata"]["name"],
                    "status": q.get("status", {}),
                }
                for q in objects("resourcequotas")
            ]
            nodes = [
                {"name": n["metadata"]["name"], "allocatable": n["status"]["allocatable"]}
                for n in objects("nodes")
            ]
            return {
                "resourceVersion": str(self.store.version),
                "namespaces": namespaces,
                "pods": pods,
                "secrets": secrets,
                "releases": releases,
                "kustomizations": kustomizations,
                "resourceQuotas": quotas,
                "nodes": nodes,
            }
