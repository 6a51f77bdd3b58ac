"""The workload controllers the emulator plays: Helm (or Argo CD) releases, their pods, readiness.

Owns what happens below a HelmRelease or Application once the GitOps stand-in has
applied it: one pod per service replica of the chart's values (with the chart's
`commonLabels` and selector labels), ready only once the Secret the release reads
exists (like Flux waiting on `valuesFrom`; for Argo CD the Application syncs at once
and its pods wait for the Secret they read), the release's status (Flux's Ready
condition, Argo CD's sync and health), and whether a namespace's pods are all
ready. May import the store and PyYAML.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import yaml

from reconciler.local.kubernetes.store import ObjectStore, object_key, timestamp, uid

RELEASES = ("helmreleases", "applications")


def release_values(plural: str, release: Mapping[str, Any]) -> dict[str, Any]:
    """The chart values a HelmRelease or Application carries."""
    spec = release.get("spec") or {}
    if plural == "helmreleases":
        return dict(spec.get("values") or {})
    sources = [spec.get("source") or {}, *(spec.get("sources") or [])]
    for source in sources:
        helm = source.get("helm") or {}
        if helm.get("valuesObject"):
            return dict(helm["valuesObject"])
        if helm.get("values"):
            parsed = yaml.safe_load(helm["values"])
            return dict(parsed) if isinstance(parsed, dict) else {}
    return {}


def release_name(plural: str, release: Mapping[str, Any]) -> str:
    spec = release.get("spec") or {}
    if plural == "helmreleases":
        return str(spec.get("releaseName") or release["metadata"]["name"])
    helm = (spec.get("source") or {}).get("helm") or {}
    return str(helm.get("releaseName") or release["metadata"]["name"])


def target_namespace(plural: str, release: Mapping[str, Any]) -> str:
    spec = release.get("spec") or {}
    if plural == "applications":
        return str((spec.get("destination") or {}).get("namespace") or "")
    return str(spec.get("targetNamespace") or release["metadata"].get("namespace"))


class WorkloadController:
    """Pods and status for the releases that changes concern (store lock held)."""

    def __init__(
        self, store: ObjectStore, *, secret_name: str, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.secret_name = secret_name
        self.clock = clock
        # Which namespaces each release depends on, and the reverse: a namespace's
        # dependents are the releases a change in it can concern.
        self._watched: dict[tuple[str, str], set[str]] = {}
        self._dependents: dict[str, set[tuple[str, str]]] = {}
        self._indexed = False

    def _secret_refs(self, plural: str, release: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(namespace, name) of the Secrets the release waits for."""
        namespace = target_namespace(plural, release)
        if plural == "helmreleases":
            refs = [
                (release["metadata"]["namespace"], str(ref["name"]))
                for ref in (release.get("spec") or {}).get("valuesFrom") or []
                if ref.get("kind") == "Secret"
            ]
            return refs or [(namespace, self.secret_name)]
        # The chart's pods read the Secret through envFrom: Argo syncs at once, the
        # pods stay in CreateContainerConfigError until democtl has written it.
        return [(namespace, self.secret_name)]

    def _watch(self, plural: str, key: str) -> None:
        """Record which namespaces `plural/key` depends on (its own, its target, its Secrets')."""
        for namespace in self._watched.pop((plural, key), set()):
            self._dependents[namespace].discard((plural, key))
        release = self.store.get(plural, key)
        if release is None:
            return
        namespaces = {release["metadata"].get("namespace") or "", target_namespace(plural, release)}
        namespaces |= {ns for ns, _ in self._secret_refs(plural, release)}
        self._watched[(plural, key)] = namespaces
        for namespace in namespaces:
            self._dependents.setdefault(namespace, set()).add((plural, key))

    def refresh(self, events: Iterable[tuple[str, str, str]] | None) -> None:
        """Bring pods and status in step for the releases the changes in `events` concern.

        `events` are the store's (plural, namespace, name) changes; None means every
        release (a fresh start). A release is concerned when it changed itself or when
        anything changed in a namespace it depends on: its own, its target (the
        Namespace object included) or its Secrets'. A controller that watches instead of
        polling is what keeps one Secret write from costing work in every demo.
        """
        if events is None or not self._indexed:
            for plural in RELEASES:
                for release in self.store.all(plural):
                    meta = release["metadata"]
                    self._watch(plural, object_key(meta.get("namespace"), meta["name"]))
            self._indexed = True
        concerned: set[tuple[str, str]]
        if events is None:
            concerned = set(self._watched)
        else:
            concerned = set()
            for plural, namespace, name in events:
                if plural in RELEASES:
                    self._watch(plural, object_key(namespace, name))
                    concerned.add((plural, object_key(namespace, name)))
                touched = name if plural == "namespaces" else namespace
                concerned |= self._dependents.get(touched, set())
        for plural, key in sorted(concerned, key=lambda r: (RELEASES.index(r[0]), r[1])):
            if (found := self.store.get(plural, key)) is not None:
                self._refresh_release(plural, found)

    def _refresh_release(self, plural: str, release: dict[str, Any]) -> None:
        if (release.get("spec") or {}).get("suspend") is True:
            return  # a suspended HelmRelease is left as it is, status included
        namespace = target_namespace(plural, release)
        if self.store.get("namespaces", object_key(None, namespace)) is None:
            return
        missing = [
            f"{ns}/{name}"
            for ns, name in self._secret_refs(plural, release)
            if self.store.get("secrets", object_key(ns, name)) is None
        ]
        pods = self._reconcile_pods(plural, release, namespace, ready=not missing)
        self._set_release_status(plural, release, pods, missing)

    def namespace_ready(self, namespace: str) -> bool:
        """All pods of the namespace ready (and at least one)."""
        pods = self.store.in_namespace("pods", namespace)
        return bool(pods) and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in pod_conditions)
            for pod_conditions in (p["status"]["conditions"] for p in pods)
        )

    def record_restarts(self, namespace: str, service: str, restarts: int) -> None:
        for pod in self.store.in_namespace("pods", namespace):
            if pod["metadata"]["labels"].get("app.kubernetes.io/name") == service:
                updated = copy.deepcopy(pod)
                for status in updated["status"]["containerStatuses"]:
                    status["restartCount"] = restarts
                self.store.put("pods", updated)

    def _reconcile_pods(
        self, plural: str, release: dict[str, Any], namespace: str, *, ready: bool
    ) -> list[dict[str, Any]]:
        name = release_name(plural, release)
        values = release_values(plural, release)
        services = values.get("services") or {}
        given_labels = values.get("commonLabels")
        common = (
            {str(k): str(v) for k, v in given_labels.items()}
            if isinstance(given_labels, dict)
            else {}
        )
        wanted: dict[str, dict[str, Any]] = {}
        for service, given in sorted(services.items()):
            config = given or {}
            if config.get("enabled") is False:
                continue
            replicas = int(config.get("replicas", 1))
            digest = hashlib.sha256(f"{namespace}/{name}/{service}".encode()).hexdigest()
            for index in range(replicas):
                pod_name = f"{name}-{service}-{digest[:10]}-{index}"
                wanted[pod_name] = self._pod(
                    namespace,
                    pod_name,
                    release=name,
                    service=service,
                    config=config,
                    common_labels=common,
                    template_hash=digest[:10],
                    ready=ready,
                )
        for pod in self.store.in_namespace("pods", namespace):
            if pod["metadata"]["name"] not in wanted:
                self.store.delete("pods", object_key(namespace, pod["metadata"]["name"]))
        return [self.store.put("pods", pod) for pod in wanted.values()]

    def _pod(
        self,
        namespace: str,
        pod_name: str,
        *,
        release: str,
        service: str,
        config: Mapping[str, Any],
        common_labels: Mapping[str, str],
        template_hash: str,
        ready: bool,
    ) -> dict[str, Any]:
        existing = self.store.get("pods", object_key(namespace, pod_name)) or {}
        restarts = 0
        for status in (existing.get("status") or {}).get("containerStatuses") or []:
            restarts = int(status.get("restartCount", 0))
        flag = "True" if ready else "False"
        image = f"ghcr.io/splits-network/{service}:latest"
        state = (
            {"running": {}}
            if ready
            else {
                "waiting": {
                    "reason": "CreateContainerConfigError",
                    "message": f'secret "{self.secret_name}" not found',
                }
            }
        )
        return {
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                # like a chart: its `commonLabels` value, then its own selector labels
                "labels": {
                    **common_labels,
                    "app.kubernetes.io/name": service,
                    "app.kubernetes.io/instance": release,
                    "pod-template-hash": template_hash,
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{release}-{service}-{template_hash}",
                        "uid": uid(f"replicasets/{namespace}/{release}-{service}"),
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "containers": [
                    {
                        "name": service,
                        "image": image,
                        "resources": dict(config.get("resources") or {}),
                    }
                ]
            },
            "status": {
                "phase": "Running" if ready else "Pending",
                "conditions": [
                    {"type": "ContainersReady", "status": flag},
                    {"type": "Ready", "status": flag},
                ],
                "containerStatuses": [
                    {
                        "name": service,
                        "image": image,
                        "imageID": "",
                        "ready": ready,
                        "restartCount": restarts,
                        "state": state,
                    }
                ],
            },
        }

    def _set_release_status(
        self, plural: str, release: dict[str, Any], pods: list[dict[str, Any]], missing: list[str]
    ) -> None:
        stamp = timestamp(self.clock())
        old = copy.deepcopy(release.get("status") or {})
        new: dict[str, Any]
        if plural == "helmreleases":
            # Flux's Ready condition: https://fluxcd.io/flux/components/helm/helmreleases/
            if missing:
                condition = {
                    "type": "Ready",
                    "status": "False",
                    "reason": "InstallFailed",
                    "message": f"could not resolve Secret chart values reference "
                    f"'{missing[0]}' with key 'values.yaml': secrets not found",
                }
            else:
                condition = {
                    "type": "Ready",
                    "status": "True",
                    "reason": "InstallSucceeded",
                    "message": f"Helm install succeeded for release "
                    f"{release['metadata']['namespace']}/{release['metadata']['name']}",
                }
            previous: dict[str, Any] = next(
                (c for c in old.get("conditions", []) if c["type"] == "Ready"), {}
            )
            same = {k: previous.get(k) for k in condition} == condition
            since = previous.get("lastTransitionTime", stamp) if same else stamp
            condition["lastTransitionTime"] = since
            new = {
                "observedGeneration": release["metadata"].get("generation", 1),
                "conditions": [condition],
            }
        else:
            all_ready = bool(pods) and all(p["status"]["phase"] == "Running" for p in pods)
            health = "Healthy" if all_ready else "Progressing"
            new = {
                "sync": {"status": "Synced"},
                "health": {
                    "status": health,
                    **({} if all_ready else {"message": "waiting for pods to become ready"}),
                },
            }
        if new != old:
            updated = copy.deepcopy(release)
            updated["status"] = new
            self.store.put(plural, updated)
