"""What helm-controller and Argo CD's application controller decide for one release.

Owns the release side of the controllers the emulator plays, as pure functions of a
HelmRelease or Application, what it resolves to and the time: whether to install,
upgrade or sync, what a failure does to the failure counts and the retries, when a
release stops (Stalled, RetriesExceeded; an Application's sync Failed after its retry
limit) and what starts it again (a new spec or values, a reset or force request, a new
`operation`), the status the controller writes, and when it looks again. Whether an
attempt fails is the caller's to say (`attempt` returns an error message or None):
tests configure releases to fail. Pods are the caller's too: an outcome says whether
the chart's objects are applied, left alone or removed. May import the store's helpers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from reconciler.local.kubernetes.store import timestamp

Pods = Literal["apply", "keep", "remove"]
Attempt = Callable[[], str | None]  # one install/upgrade/sync: an error message, or None

# helm-controller's annotations (fluxcd/helm-controller api/v2/annotations.go, and
# https://fluxcd.io/flux/components/helm/helmreleases/#resetting-remediation-retries)
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
RESET_AT = "reconcile.fluxcd.io/resetAt"
FORCE_AT = "reconcile.fluxcd.io/forceAt"
# a Secret helm-controller watches: a change to it reconciles the releases reading it at once
# (https://fluxcd.io/flux/components/helm/helmreleases/#reacting-immediately-to-configuration-dependencies)
WATCH_LABEL = "reconcile.fluxcd.io/watch"
ARGO_REFRESH = "argocd.argoproj.io/refresh"
# Flux controllers' rate limiter after a failed reconcile: --min-retry-delay 750ms doubling
# up to --max-retry-delay 15m (https://fluxcd.io/flux/components/helm/options/#flags)
RETRY_MIN, RETRY_MAX = timedelta(milliseconds=750), timedelta(minutes=15)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: object, default: timedelta) -> timedelta:
    """A Go duration as Kubernetes objects spell them ("10m", "1h30m", "5m0s")."""
    parts = _DURATION.findall(str(text or ""))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        return default
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def watched(secret: Mapping[str, Any] | None) -> bool:
    labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(WATCH_LABEL) == "Enabled"


def retry_delay(failures: int) -> timedelta:
    delay: timedelta = RETRY_MIN * (2 ** max(failures - 1, 0))
    return min(delay, RETRY_MAX)


@dataclass
class Outcome:
    status: dict[str, Any]
    pods: Pods
    requeue_at: datetime | None  # None: the controller waits for a change (a terminal error)
    clear: tuple[str, ...] = ()  # top-level fields the controller removes (Argo's `operation`)
    annotations_removed: tuple[str, ...] = ()


def _set_condition(
    status: dict[str, Any], kind: str, flag: str, reason: str, message: str, stamp: str
) -> None:
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    previous: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == kind), {}
    )
    condition = {"type": kind, "status": flag, "reason": reason, "message": message}
    same = all(previous.get(k) == v for k, v in condition.items())
    condition["lastTransitionTime"] = previous.get("lastTransitionTime", stamp) if same else stamp
    order = {"Ready": 0, "Stalled": 1}
    status["conditions"] = sorted([*conditions, condition], key=lambda c: order.get(c["type"], 2))


def _drop_condition(status: dict[str, Any], kind: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != kind]


def _handle_request(annotations: Mapping[str, str], key: str, status: dict[str, Any]) -> bool:
    """fluxcd/pkg apis/meta HandleAnnotationRequest: the annotation counts only when it
    equals requestedAt and differs from the last value handled, which it then becomes."""
    value, requested = annotations.get(key), annotations.get(REQUESTED_AT)
    field = {RESET_AT: "lastHandledResetAt", FORCE_AT: "lastHandledForceAt"}[key]
    if value is None or requested is None or value != requested or status.get(field) == value:
        return False
    status[field] = value
    return True


def config_digest(release: Mapping[str, Any], secret_values: Mapping[str, str]) -> str:
    """What a Helm action deploys: chart, inline values and the values read from Secrets."""
    spec = release.get("spec") or {}
    material = {
        "chart": spec.get("chart") or spec.get("chartRef"),
        "values": spec.get("values") or {},
        "from": dict(sorted(secret_values.items())),
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def reconcile_helmrelease(
    release: Mapping[str, Any],
    *,
    missing: list[str],
    digest: str,
    attempt: Attempt,
    now: datetime,
    values_failures: int = 0,
) -> Outcome:
    """One helm-controller reconcile (internal/controller/helmrelease_controller.go and
    internal/reconcile/atomic_release.go of fluxcd/helm-controller)."""
    meta, spec = release["metadata"], release.get("spec") or {}
    status = copy.deepcopy(release.get("status") or {})
    stamp = timestamp(now)
    generation = int(meta.get("generation") or 1)
    annotations = meta.get("annotations") or {}
    status["observedGeneration"] = generation
    if REQUESTED_AT in annotations:
        status["lastHandledReconcileAt"] = annotations[REQUESTED_AT]
    if missing:
        # ChartValuesFromReferences failed: Ready=False ValuesError, and the error is
        # returned, so the rate limiter retries it
        name = missing[0].split("/", 1)[1]
        _set_condition(
            status,
            "Ready",
            "False",
            "ValuesError",
            f"could not resolve Secret chart values reference '{missing[0]}' with key "
            f"'values.yaml': secrets \"{name}\" not found",
            stamp,
        )
        # A real cluster has no pods before the install; the emulator has always shown the
        # chart's pods pending on the missing Secret meanwhile, and keeps doing so.
        return Outcome(status, "apply", now + retry_delay(values_failures + 1))
    interval = parse_duration(spec.get("interval"), timedelta(minutes=10))
    # MustResetFailures (internal/action/reset.go): a reset request is always recorded;
    # a new generation, new values or the request clear the failure counts
    reset = _handle_request(annotations, RESET_AT, status)
    force = _handle_request(annotations, FORCE_AT, status)
    if (
        status.get("lastAttemptedGeneration") != generation
        or status.get("lastAttemptedConfigDigest") != digest
        or reset
    ):
        for counter in ("failures", "installFailures", "upgradeFailures"):
            status.pop(counter, None)
        _drop_condition(status, "Stalled")  # a new attempt: a new stall is a new failure
    status["lastAttemptedGeneration"] = generation
    status["lastAttemptedConfigDigest"] = digest
    history: list[dict[str, Any]] = list(status.get("history") or [])
    latest = history[0] if history else None
    in_sync = latest is not None and latest.get("status") == "deployed"
    if in_sync and (latest or {}).get("configDigest") == digest and not force:
        _drop_condition(status, "Stalled")
        return Outcome(status, "keep", now + interval)
    release_name = str(spec.get("releaseName") or meta["name"])
    chart = str(
        (spec.get("chartRef") or {}).get("name")
        or ((spec.get("chart") or {}).get("spec") or {}).get("chart")
        or "chart"
    )
    target = f"{meta['namespace']}/{release_name}"
    ever_deployed = any(h.get("status") in {"deployed", "superseded"} for h in history)
    action = "upgrade" if ever_deployed else "install"
    retries = int(((spec.get(action) or {}).get("remediation") or {}).get("retries") or 0)
    counter = f"{action}Failures"
    while True:
        failures = int(status.get(counter) or 0)
        if retries >= 0 and failures > retries and not force:
            # actionForState: ErrExceededMaxRetries, a terminal error: no requeue at all
            _set_condition(
                status,
                "Stalled",
                "True",
                "RetriesExceeded",
                f"Failed to {action} after {failures} attempt(s)",
                stamp,
            )
            return Outcome(status, "keep" if ever_deployed else "remove", None)
        force = False  # a one-off
        status["lastAttemptedReleaseAction"] = action
        error = attempt()
        if error is None:
            version = int((latest or {}).get("version") or 0) + 1
            for older in history:
                if older.get("status") == "deployed":
                    older["status"] = "superseded"
            snapshot = {
                "name": release_name,
                "namespace": meta["namespace"],
                "version": version,
                "status": "deployed",
                "chartName": chart,
                "configDigest": digest,
                "firstDeployed": (history[-1] if history else {}).get("firstDeployed", stamp),
                "lastDeployed": stamp,
            }
            status["history"] = [snapshot, *history][:5]
            _set_condition(
                status,
                "Ready",
                "True",
                f"{action.capitalize()}Succeeded",
                f"Helm {action} succeeded for release {target}.v{version} with chart {chart}",
                stamp,
            )
            _drop_condition(status, "Stalled")
            return Outcome(status, "apply", now + interval)
        status[counter] = failures + 1
        status["failures"] = int(status.get("failures") or 0) + 1
        _set_condition(
            status,
            "Ready",
            "False",
            f"{action.capitalize()}Failed",
            f"Helm {action} failed for release {target} with chart {chart}: {error}",
            stamp,
        )
        if action == "install":
            history = []  # remediated by an uninstall
            status.pop("history", None)
        # remediated, retries left: ErrMustRequeue, `Requeue: true` at once; the rate
        # limiter's sub-second delay is not waited out here


def application_revision(app: Mapping[str, Any]) -> str:
    """The revision Argo CD would resolve the source to (here: a digest of the source)."""
    spec = app.get("spec") or {}
    source = {"source": spec.get("source"), "sources": spec.get("sources")}
    text = json.dumps(source, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def reconcile_application(app: Mapping[str, Any], *, attempt: Attempt, now: datetime) -> Outcome:
    """One refresh of Argo CD's application controller (controller/appcontroller.go)."""
    spec = app.get("spec") or {}
    status = copy.deepcopy(app.get("status") or {})
    stamp = timestamp(now)
    revision = application_revision(app)
    operation = copy.deepcopy(app.get("operation"))
    refresh = ARGO_REFRESH in ((app.get("metadata") or {}).get("annotations") or {})
    cleared = ("operation",) if operation is not None else ()
    removed = (ARGO_REFRESH,) if refresh else ()
    state = status.get("operationState") or {}
    policy = spec.get("syncPolicy") or {}
    sync = status.get("sync") or {}
    if operation is None:
        if sync.get("status") == "Synced" and sync.get("revision") == revision:
            return Outcome(status, "keep", None, cleared, removed)
        status["sync"] = {"status": "OutOfSync", "revision": revision}
        if policy.get("automated") is None:
            return Outcome(status, "keep", None, cleared, removed)
        attempted = (state.get("syncResult") or {}).get("revision") == revision
        if attempted and state.get("phase") != "Succeeded":
            # autoSync: "Skipping auto-sync: failed previous sync attempt to <revision>"
            _sync_error(status, revision, stamp)
            return Outcome(status, "keep", None, cleared, removed)
        # an automated sync carries the policy's retry, five retries when it has none
        operation = {
            "initiatedBy": {"automated": True},
            "sync": {"revision": revision, "prune": bool(policy["automated"].get("prune"))},
            "retry": copy.deepcopy(policy.get("retry") or {"limit": 5}),
        }
    limit = int((operation.get("retry") or {}).get("limit") or 0)
    retries = 0
    while True:
        error = attempt()
        if error is None:
            status["operationState"] = {
                "operation": operation,
                "phase": "Succeeded",
                "message": "successfully synced (all tasks run)",
                "startedAt": stamp,
                "finishedAt": stamp,
                **({"retryCount": retries} if retries else {}),
                "syncResult": {"revision": revision},
            }
            status["sync"] = {"status": "Synced", "revision": revision}
            status.pop("conditions", None)
            return Outcome(status, "apply", None, cleared, removed)
        if retries < limit:
            # processRequestedAppOperation retries a failed sync after its backoff; the
            # emulator does not wait it out
            retries += 1
            continue
        status["operationState"] = {
            "operation": operation,
            "phase": "Failed",
            "message": f"{error} (retried {retries} times).",
            "startedAt": stamp,
            "finishedAt": stamp,
            "retryCount": retries,
            "syncResult": {"revision": revision},
        }
        status["sync"] = {"status": "OutOfSync", "revision": revision}
        _sync_error(status, revision, stamp)  # the refresh after the operation: autoSync skips
        return Outcome(status, "keep", None, cleared, removed)


def _sync_error(status: dict[str, Any], revision: str, stamp: str) -> None:
    message = (status.get("operationState") or {}).get("message", "")
    previous: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c["type"] == "SyncError"), {}
    )
    text = f"Failed sync attempt to {revision}: {message}"
    since = previous.get("lastTransitionTime", stamp) if previous.get("message") == text else stamp
    status["conditions"] = [{"type": "SyncError", "message": text, "lastTransitionTime": since}]
