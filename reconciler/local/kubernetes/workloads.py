"""The workload controllers the emulator plays: Helm (or Argo CD) releases, their pods, readiness.

Owns what happens below a HelmRelease or Application once the GitOps stand-in has
applied it: when the release controller runs (`releases` decides what it does) - on a
change to the release, its namespace appearing, a change to a values Secret carrying
`reconcile.fluxcd.io/watch: Enabled`, or its requeue time (`spec.interval`, a retry's
delay) on the injected clock - the configured failures tests ask for, one pod per
service replica of the chart's values once it installs or syncs (with the chart's
`commonLabels` and selector labels), ready only once the Secret the release reads
exists (for Argo CD the Application syncs at once and its pods wait for the Secret
they read), the release's status (Flux's conditions and history, Argo CD's operation
state, sync and health), and whether a namespace's pods are all ready. May import the
store, `releases` and PyYAML.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import yaml

from reconciler.local.kubernetes import releases
from reconciler.local.kubernetes.store import ObjectStore, object_key, uid, value_digest

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
        # the requeue times the release controllers asked for, and a heap of them
        self._requeue: dict[tuple[str, str], datetime] = {}
        self._queue: list[tuple[datetime, str, str]] = []
        self._watched_secrets: set[tuple[str, str]] = set()
        self._values_failures: dict[str, int] = {}  # ValuesError in a row, for the delay
        self._failures: dict[tuple[str, str], list[str]] = {}  # configured failures

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
        # The chart's pods read the Secret its values name (`supabase.existingSecret`, the
        # chart contract) as environment variables, not optional: Argo syncs at once and
        # the kubelet keeps the pods in CreateContainerConfigError until that Secret exists.
        supabase = release_values(plural, release).get("supabase")
        named = supabase.get("existingSecret") if isinstance(supabase, Mapping) else None
        return [(namespace, str(named or self.secret_name))]

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

    def refresh(
        self,
        events: Iterable[tuple[str, str, str]] | None,
        due: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Bring pods and status in step for the releases the changes in `events` concern.

        `events` are the store's (plural, namespace, name) changes; None means every
        release (a fresh start). A release is concerned when it changed itself or when
        anything changed in a namespace it depends on: its own, its target (the
        Namespace object included) or its Secrets'. A controller that watches instead of
        polling is what keeps one Secret write from costing work in every demo.

        Being concerned re-reads the pods' readiness; the release controller itself
        (`releases`) runs only when it would: the release changed, its namespace appeared,
        a Secret it reads changed and carries the watch label (Flux), or its requeue time
        in `due` came (a fresh start runs it for every release, as a controller starting).
        """
        if events is None or not self._indexed:
            for plural in RELEASES:
                for release in self.store.all(plural):
                    meta = release["metadata"]
                    self._watch(plural, object_key(meta.get("namespace"), meta["name"]))
            self._indexed = True
        concerned: set[tuple[str, str]]
        triggered: set[tuple[str, str]] = set(due)
        if events is None:
            concerned = set(self._watched)
            triggered |= concerned
        else:
            concerned = set(triggered)
            for plural, namespace, name in events:
                if plural in RELEASES:
                    self._watch(plural, object_key(namespace, name))
                    concerned.add((plural, object_key(namespace, name)))
                    triggered.add((plural, object_key(namespace, name)))
                touched = name if plural == "namespaces" else namespace
                dependents = self._dependents.get(touched, set())
                concerned |= dependents
                if plural == "namespaces":
                    triggered |= dependents
                elif plural == "secrets":
                    triggered |= self._secret_triggers(namespace, name, dependents)
        for plural, key in sorted(concerned, key=lambda r: (RELEASES.index(r[0]), r[1])):
            if (found := self.store.get(plural, key)) is not None:
                self._refresh_release(plural, found, trigger=(plural, key) in triggered)

    def _secret_triggers(
        self, namespace: str, name: str, dependents: Iterable[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """The HelmReleases a change to this Secret reconciles at once: those reading it,
        when it carries the watch label (or carried it, for a deletion)."""
        secret = self.store.get("secrets", object_key(namespace, name))
        ref = (namespace, name)
        if secret is not None:
            if releases.watched(secret):
                self._watched_secrets.add(ref)
            else:
                self._watched_secrets.discard(ref)
                return set()
        elif ref not in self._watched_secrets:
            return set()
        found = set()
        for plural, key in dependents:
            release = self.store.get(plural, key)
            if plural == "helmreleases" and release and ref in self._secret_refs(plural, release):
                found.add((plural, key))
        return found

    def due(self, now: datetime) -> list[tuple[str, str]]:
        """The releases whose requeue time has come (their interval, or a retry's delay)."""
        found = []
        while self._queue and self._queue[0][0] <= now:
            when, plural, key = heapq.heappop(self._queue)
            if self._requeue.get((plural, key)) == when:
                del self._requeue[(plural, key)]
                found.append((plural, key))
        return found

    def _schedule(self, plural: str, key: str, when: datetime | None) -> None:
        if when is None:
            self._requeue.pop((plural, key), None)
            return
        self._requeue[(plural, key)] = when
        heapq.heappush(self._queue, (when, plural, key))

    def fail_release(self, plural: str, key: str, times: int, message: str) -> None:
        """Make the next `times` install/upgrade/sync attempts of the release fail."""
        self._failures[(plural, key)] = [message] * times

    def _attempt(self, plural: str, key: str) -> str | None:
        pending = self._failures.get((plural, key))
        if not pending:
            return None
        message = pending.pop()
        if not pending:
            del self._failures[(plural, key)]
        return message

    def _secret_values(self, release: Mapping[str, Any]) -> dict[str, str]:
        """Digests of the values a HelmRelease reads from Secrets, by reference."""
        found: dict[str, str] = {}
        for ref in (release.get("spec") or {}).get("valuesFrom") or []:
            if ref.get("kind") != "Secret":
                continue
            secret = self.store.get(
                "secrets", object_key(release["metadata"]["namespace"], str(ref["name"]))
            )
            value = ((secret or {}).get("data") or {}).get(str(ref.get("valuesKey", "values.yaml")))
            path = f"{ref['name']}/{ref.get('valuesKey', '')}/{ref.get('targetPath', '')}"
            found[path] = value_digest(value) if value is not None else ""
        return found

    def _refresh_release(self, plural: str, release: dict[str, Any], *, trigger: bool) -> None:
        if (release.get("spec") or {}).get("suspend") is True:
            return  # a suspended HelmRelease is left as it is, status included
        namespace = target_namespace(plural, release)
        if self.store.get("namespaces", object_key(None, namespace)) is None:
            return
        meta = release["metadata"]
        key = object_key(meta.get("namespace"), meta["name"])
        missing = []
        for ref in self._secret_refs(plural, release):
            secret = self.store.get("secrets", object_key(*ref))
            if secret is None:
                missing.append("/".join(ref))
            elif releases.watched(secret):
                self._watched_secrets.add(ref)  # its deletion is a change it is watched for
        # the Secret the pods wait for, or None: they run
        awaited = missing[0].split("/", 1)[1] if missing else None
        if not trigger:
            pods = self._pods_ready(namespace, release_name(plural, release), awaited=awaited)
            if plural == "applications":
                self._write(plural, release, self._argo_health(release.get("status") or {}, pods))
            return
        now = self.clock()
        if plural == "helmreleases":
            outcome = releases.reconcile_helmrelease(
                release,
                missing=missing,
                digest=releases.config_digest(release, self._secret_values(release)),
                attempt=lambda: self._attempt(plural, key),
                now=now,
                values_failures=self._values_failures.get(key, 0),
            )
            if missing:
                self._values_failures[key] = self._values_failures.get(key, 0) + 1
            else:
                self._values_failures.pop(key, None)
        else:
            outcome = releases.reconcile_application(
                release, attempt=lambda: self._attempt(plural, key), now=now
            )
        self._schedule(plural, key, outcome.requeue_at)
        name = release_name(plural, release)
        if outcome.pods == "apply":
            pods = self._reconcile_pods(plural, release, namespace, awaited=awaited)
        elif outcome.pods == "remove":
            pods = self._remove_pods(namespace, name)
        else:
            pods = self._pods_ready(namespace, name, awaited=awaited)
        status = outcome.status
        if plural == "applications":
            status = self._argo_health(status, pods)
        self._write(plural, release, status, outcome.clear, outcome.annotations_removed)

    def _write(
        self,
        plural: str,
        release: dict[str, Any],
        status: dict[str, Any],
        clear: Iterable[str] = (),
        annotations_removed: Iterable[str] = (),
    ) -> None:
        updated = copy.deepcopy(release)
        updated["status"] = status
        for field in clear:
            updated.pop(field, None)
        annotations = updated["metadata"].get("annotations") or {}
        for annotation in annotations_removed:
            annotations.pop(annotation, None)
        if not annotations:
            updated["metadata"].pop("annotations", None)
        if updated != release:
            self.store.put(plural, updated)

    @staticmethod
    def _argo_health(status: Mapping[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
        """Argo CD's health of what it synced: Healthy once every pod runs."""
        new = dict(status)
        if not pods:
            synced = (status.get("operationState") or {}).get("phase") == "Succeeded"
            new["health"] = (
                {"status": "Progressing", "message": "waiting for pods to become ready"}
                if synced
                else {"status": "Missing"}  # nothing synced yet
            )
            return new
        if all(p["status"]["phase"] == "Running" for p in pods):
            new["health"] = {"status": "Healthy"}
        else:
            new["health"] = {"status": "Progressing", "message": "waiting for pods to become ready"}
        return new

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

    def _release_pods(self, namespace: str, release: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.store.in_namespace("pods", namespace)
            if p["metadata"]["labels"].get("app.kubernetes.io/instance") == release
        ]

    def _remove_pods(self, namespace: str, release: str) -> list[dict[str, Any]]:
        for pod in self._release_pods(namespace, release):
            self.store.delete("pods", object_key(namespace, pod["metadata"]["name"]))
        return []

    def _pods_ready(
        self, namespace: str, release: str, *, awaited: str | None
    ) -> list[dict[str, Any]]:
        """What the kubelet does meanwhile: pods start once the Secret they read exists."""
        pods = []
        for pod in self._release_pods(namespace, release):
            labels = pod["metadata"]["labels"]
            containers = pod["spec"]["containers"]
            redone = self._pod(
                namespace,
                pod["metadata"]["name"],
                release=release,
                service=labels["app.kubernetes.io/name"],
                config={"resources": containers[0].get("resources") or {}} if containers else {},
                common_labels={
                    k: v
                    for k, v in labels.items()
                    if k
                    not in {
                        "app.kubernetes.io/name",
                        "app.kubernetes.io/instance",
                        "pod-template-hash",
                    }
                },
                template_hash=labels["pod-template-hash"],
                awaited=awaited,
            )
            pods.append(self.store.put("pods", redone))
        return pods

    def _reconcile_pods(
        self, plural: str, release: dict[str, Any], namespace: str, *, awaited: str | None
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
                    awaited=awaited,
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
        awaited: str | None,
    ) -> dict[str, Any]:
        ready = awaited is None
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
                    "message": f'secret "{awaited}" not found',
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
