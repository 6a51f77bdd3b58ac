"""The emulated cluster's object store: the served resource types, their objects, persistence.

Owns what etcd holds behind a real API server: objects by resource and key, the
cluster's resourceVersion (it moves only when an object really changes), uids and
creation times, the GitOps stand-in's record of what it applied (`synced`), and the
state file under `state_dir` that lets successive `--local` commands share one cluster.
Secret values never reach the disk: only their digests do. Imports the standard
library only.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_FILE = "kubernetes.json"
FLUX = "helm.toolkit.fluxcd.io/v2"
ARGO = "argoproj.io/v1alpha1"

# plural -> (apiVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "namespaces": ("v1", "Namespace", False),
    "nodes": ("v1", "Node", False),
    "secrets": ("v1", "Secret", True),
    "pods": ("v1", "Pod", True),
    "resourcequotas": ("v1", "ResourceQuota", True),
    "helmreleases": (FLUX, "HelmRelease", True),
    "applications": (ARGO, "Application", True),
}
KIND_TO_PLURAL = {(api, kind): plural for plural, (api, kind, _) in RESOURCES.items()}


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_key(namespace: str | None, name: str) -> str:
    return f"{namespace or ''}/{name}"


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def uid(seed: str) -> str:
    """A uid derived from `seed`: the same world gets the same uids, run after run."""
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


_DIGEST_PREFIX = b"democtl-emulator-sha256:"


def value_digest(encoded: str) -> str:
    """A Secret value as it is kept on disk: base64 of a digest, never the value.

    A value that already is such a digest (after a restart) stays as it is.
    """
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raw = encoded.encode()
    if raw.startswith(_DIGEST_PREFIX):
        return encoded
    digest = _DIGEST_PREFIX + hashlib.sha256(raw).hexdigest().encode()
    return base64.b64encode(digest).decode()


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without the fields the server maintains, to tell a real change."""
    clean = copy.deepcopy(dict(obj))
    if clean.get("kind") == "Secret" and isinstance(clean.get("data"), dict):
        clean["data"] = {k: value_digest(str(v)) for k, v in clean["data"].items()}
    meta = clean.get("metadata") or {}
    for field in ("resourceVersion", "creationTimestamp", "uid", "managedFields", "generation"):
        meta.pop(field, None)
    return clean


class ObjectStore:
    """Objects by resource and key, the resourceVersion, and their state file."""

    def __init__(self, state_dir: Path, clock: Callable[[], datetime]) -> None:
        self.state_dir = Path(state_dir)
        self.clock = clock
        # One lock for the whole cluster: API requests, controllers and hooks take it.
        self.lock = threading.RLock()
        self._state = self._load()

    # --- persistence ----------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load(self) -> dict[str, Any]:
        empty: dict[str, Any] = {
            "resourceVersion": 0,
            "objects": {plural: {} for plural in RESOURCES},
            "synced": {},
        }
        if not self.state_file.is_file():
            return empty
        loaded = json.loads(self.state_file.read_text())
        for plural in RESOURCES:
            loaded.setdefault("objects", {}).setdefault(plural, {})
        loaded.setdefault("synced", {})
        loaded.setdefault("resourceVersion", 0)
        return dict(loaded)

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        # Secret values stay in memory: on disk only their digests, so no password or key
        # lands in a file; after a restart a Secret reads back as digests, which is enough
        # to tell presence and whether a re-apply changes anything.
        on_disk = {**self._state, "objects": dict(self._state["objects"])}
        on_disk["objects"]["secrets"] = {
            key: {**secret, "data": {k: value_digest(v) for k, v in secret["data"].items()}}
            for key, secret in self._state["objects"]["secrets"].items()
        }
        tmp.write_text(json.dumps(on_disk, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)

    # --- objects --------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return int(self._state["resourceVersion"])

    @property
    def synced(self) -> dict[str, dict[str, Any]]:
        """The GitOps stand-in's record: demo id -> {namespace, objects: [[plural, key]]}."""
        synced: dict[str, dict[str, Any]] = self._state["synced"]
        return synced

    def objects(self, plural: str) -> dict[str, dict[str, Any]]:
        objects: dict[str, dict[str, Any]] = self._state["objects"][plural]
        return objects

    def get(self, plural: str, key: str) -> dict[str, Any] | None:
        return self.objects(plural).get(key)

    def _next_version(self) -> str:
        self._state["resourceVersion"] += 1
        return str(self._state["resourceVersion"])

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj`; the resourceVersion moves only when something really changed."""
        api_version, kind, namespaced = RESOURCES[plural]
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace") if namespaced else None
        if not namespaced:
            meta.pop("namespace", None)
        key = object_key(namespace, meta["name"])
        obj["apiVersion"], obj["kind"] = api_version, kind
        current = self.objects(plural).get(key)
        if current is not None and comparable(current) == comparable(obj):
            if plural == "secrets":
                current["data"] = obj.get("data", {})  # the values again, where only digests were
            return current
        if "spec" in obj:
            previous_generation = int((current or {}).get("metadata", {}).get("generation", 0))
            spec_changed = current is None or current.get("spec") != obj["spec"]
            meta["generation"] = previous_generation + 1 if spec_changed else previous_generation
        if current is None:
            meta["creationTimestamp"] = timestamp(self.clock())
            meta["uid"] = uid(f"{plural}/{key}/{self._state['resourceVersion']}")
        else:
            for kept in ("creationTimestamp", "uid"):
                meta[kept] = current["metadata"].get(kept)
        meta["resourceVersion"] = self._next_version()
        self.objects(plural)[key] = obj
        return obj

    def delete(self, plural: str, key: str) -> bool:
        if self.objects(plural).pop(key, None) is None:
            return False
        self._next_version()
        return True

    def in_namespace(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        return [
            obj
            for obj in self.objects(plural).values()
            if obj["metadata"].get("namespace") == namespace
        ]
