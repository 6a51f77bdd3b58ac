"""The emulated cluster's object store: the served resource types, their objects, persistence.

Owns what etcd holds behind a real API server: objects by resource, namespace and
name, indexed by label, the cluster's resourceVersion (it moves only when an object
really changes), uids and creation times, the events controllers follow, the GitOps
stand-in's record of what it applied (`synced`), and the state under `state_dir` that
lets successive `--local` commands share one cluster. A read costs what it returns
(objects are found through the (resource, namespace) buckets and the label index) and
a write costs what it changes: each `save()` appends the changes since the last one
to a journal, as etcd appends to its write-ahead log, and the snapshot is rewritten
(atomically) only when a serving process starts or the journal has outgrown it.
Secret values never reach the disk: only their digests do. May import the standard
library and the selectors.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.local.kubernetes.selectors import Requirement

STATE_FILE = "kubernetes.json"
JOURNAL_FILE = "kubernetes.journal"
# The journal is folded into the snapshot once it is larger than both of these.
MIN_COMPACT_BYTES = 1 << 20
FLUX = "helm.toolkit.fluxcd.io/v2"
ARGO = "argoproj.io/v1alpha1"
KUSTOMIZE = "kustomize.toolkit.fluxcd.io/v1"

# plural -> (apiVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "namespaces": ("v1", "Namespace", False),
    "nodes": ("v1", "Node", False),
    "secrets": ("v1", "Secret", True),
    "pods": ("v1", "Pod", True),
    "resourcequotas": ("v1", "ResourceQuota", True),
    "helmreleases": (FLUX, "HelmRelease", True),
    "applications": (ARGO, "Application", True),
    # the one Kustomization of clusters/flux/democtl.yaml, whose status the GitOps
    # stand-in keeps; rendered/ never holds one
    "kustomizations": (KUSTOMIZE, "Kustomization", True),
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


@dataclass
class StoreStats:
    """What the store did, for tests and benchmarks: work is counted, never timed."""

    visited: int = 0  # objects looked at to answer reads and lists
    journal_writes: int = 0
    journal_bytes: int = 0
    snapshot_writes: int = 0
    snapshot_bytes: int = 0


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


def _on_disk(plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    # Secret values stay in memory: on disk only their digests, so no password or key
    # lands in a file; after a restart a Secret reads back as digests, which is enough
    # to tell presence and whether a re-apply changes anything.
    if plural != "secrets":
        return obj
    return {**obj, "data": {k: value_digest(v) for k, v in (obj.get("data") or {}).items()}}


class ObjectStore:
    """Objects by resource, namespace and name; a label index; a journal and a snapshot."""

    def __init__(self, state_dir: Path, clock: Callable[[], datetime]) -> None:
        self.state_dir = Path(state_dir)
        self.clock = clock
        # One lock for the whole cluster: API requests, controllers and hooks take it.
        self.lock = threading.RLock()
        self.stats = StoreStats()
        self._version = 0
        # plural -> namespace ("" for cluster-scoped objects) -> name -> object
        self._objects: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
            plural: {} for plural in RESOURCES
        }
        # plural -> label key -> label value -> keys of the objects carrying it
        self._labels: dict[str, dict[str, dict[str, set[str]]]] = {p: {} for p in RESOURCES}
        self._synced: dict[str, dict[str, Any]] = {}
        # Changes not yet on disk: (plural, key) -> object, or None for a delete.
        self._pending: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._pending_synced: dict[str, dict[str, Any] | None] = {}
        self._events: list[tuple[str, str, str]] = []
        self._snapshot_size = 0
        self._journal_size = 0
        self._journal_torn = False
        self._load()

    # --- persistence ----------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def journal_file(self) -> Path:
        return self.state_dir / JOURNAL_FILE

    def _load(self) -> None:
        if self.state_file.is_file():
            text = self.state_file.read_text()
            self._snapshot_size = len(text)
            loaded = json.loads(text)
            self._version = int(loaded.get("resourceVersion", 0))
            for plural, objects in (loaded.get("objects") or {}).items():
                if plural in RESOURCES:
                    for key, obj in objects.items():
                        self._store(plural, key, obj)
            self._synced = dict(loaded.get("synced") or {})
        if self.journal_file.is_file():
            raw = self.journal_file.read_bytes()
            self._journal_size = len(raw)
            for line in raw.split(b"\n"):
                if not line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    # A crash while appending leaves a torn last line: that save never
                    # happened. The next write folds the journal into a new snapshot.
                    self._journal_torn = True
                    break
                self._replay(entry)
            self._journal_torn = self._journal_torn or not raw.endswith(b"\n")
        self._events.clear()

    def _replay(self, entry: Mapping[str, Any]) -> None:
        # Every entry holds whole objects and an absolute version, so replaying a
        # journal over the snapshot it was folded into (a crash between writing the
        # snapshot and removing the journal) ends in that same snapshot.
        for plural, key, obj in entry.get("put", []):
            self._store(plural, key, obj)
        for plural, key in entry.get("delete", []):
            self._unstore(plural, key)
        for demo_id, record in (entry.get("synced") or {}).items():
            if record is None:
                self._synced.pop(demo_id, None)
            else:
                self._synced[demo_id] = record
        self._version = int(entry.get("resourceVersion", self._version))

    def save(self) -> None:
        """Make the changes since the last save durable: one journal line, or a snapshot."""
        if not self._pending and not self._pending_synced:
            return
        # No snapshot yet (a new cluster's first sync is all of it), a torn journal, or
        # a journal larger than the snapshot: write the snapshot, amortised over the
        # appends that grew the journal.
        big = self._journal_size > max(self._snapshot_size, MIN_COMPACT_BYTES)
        if self._journal_torn or not self._snapshot_size or big:
            self.compact()
            return
        entry = {
            "resourceVersion": self._version,
            "put": [
                [plural, key, _on_disk(plural, obj)]
                for (plural, key), obj in self._pending.items()
                if obj is not None
            ],
            "delete": [[p, key] for (p, key), obj in self._pending.items() if obj is None],
            "synced": self._pending_synced,
        }
        line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # One write of one line in append mode: a reader sees the whole line or none
        # of it, and a line torn by a crash is dropped on the next load.
        with self.journal_file.open("ab") as journal:
            journal.write(line)
        self._journal_size += len(line)
        self.stats.journal_writes += 1
        self.stats.journal_bytes += len(line)
        self._pending.clear()
        self._pending_synced = {}

    def compact(self) -> None:
        """Write the whole state as the snapshot (atomically) and start an empty journal."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        on_disk = {
            "resourceVersion": self._version,
            "objects": {
                plural: {key: _on_disk(plural, obj) for key, obj in self._items(plural)}
                for plural in RESOURCES
            },
            "synced": self._synced,
        }
        text = json.dumps(on_disk, indent=1, sort_keys=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.state_file)
        self.journal_file.unlink(missing_ok=True)
        self._snapshot_size, self._journal_size, self._journal_torn = len(text), 0, False
        self.stats.snapshot_writes += 1
        self.stats.snapshot_bytes += len(text)
        self._pending.clear()
        self._pending_synced = {}

    def journal_pending(self) -> bool:
        """True if the state on disk is a snapshot plus a journal to fold in."""
        return self._journal_size > 0 or self._journal_torn

    # --- the index ------------------------------------------------------------------------

    def _store(self, plural: str, key: str, obj: dict[str, Any]) -> None:
        namespace, name = split_key(key)
        bucket = self._objects[plural].setdefault(namespace, {})
        if (old := bucket.get(name)) is not None:
            self._unindex(plural, key, old)
        bucket[name] = obj
        index = self._labels[plural]
        for label, value in labels_of(obj).items():
            index.setdefault(label, {}).setdefault(value, set()).add(key)

    def _unstore(self, plural: str, key: str) -> dict[str, Any] | None:
        namespace, name = split_key(key)
        bucket = self._objects[plural].get(namespace)
        if bucket is None or (old := bucket.pop(name, None)) is None:
            return None
        if not bucket:
            del self._objects[plural][namespace]
        self._unindex(plural, key, old)
        return old

    def _unindex(self, plural: str, key: str, obj: Mapping[str, Any]) -> None:
        index = self._labels[plural]
        for label, value in labels_of(obj).items():
            keys = index[label][value]
            keys.discard(key)
            if not keys:
                del index[label][value]
                if not index[label]:
                    del index[label]

    def _items(self, plural: str) -> list[tuple[str, dict[str, Any]]]:
        return sorted(
            (object_key(namespace or None, name), obj)
            for namespace, bucket in self._objects[plural].items()
            for name, obj in bucket.items()
        )

    # --- objects --------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    @property
    def synced(self) -> Mapping[str, dict[str, Any]]:
        """The GitOps stand-in's record: demo id -> {namespace, objects: [[plural, key]], ...}."""
        return self._synced

    def set_synced(self, demo_id: str, record: dict[str, Any]) -> None:
        if self._synced.get(demo_id) != record:
            self._synced[demo_id] = record
            self._pending_synced[demo_id] = record

    def pop_synced(self, demo_id: str) -> dict[str, Any]:
        record = self._synced.pop(demo_id)
        self._pending_synced[demo_id] = None
        return record

    def drain_events(self) -> list[tuple[str, str, str]]:
        """(plural, namespace, name) of every object changed since the last drain, in order."""
        events, self._events = self._events, []
        return events

    def get(self, plural: str, key: str) -> dict[str, Any] | None:
        namespace, name = split_key(key)
        return self._objects[plural].get(namespace, {}).get(name)

    def count(self, plural: str) -> int:
        return sum(len(bucket) for bucket in self._objects[plural].values())

    def all(self, plural: str) -> list[dict[str, Any]]:
        """Every object of `plural`, in key order (the order of the state file)."""
        items = self._items(plural)
        self.stats.visited += len(items)
        return [obj for _, obj in items]

    def in_namespace(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        objects = list(self._objects[plural].get(namespace, {}).values())
        self.stats.visited += len(objects)
        return objects

    def select(
        self, plural: str, namespace: str | None, requirements: list[Requirement]
    ) -> list[dict[str, Any]]:
        """The objects in `namespace` (None: all) matching every requirement, in key order.

        Candidates come from the smallest of the namespace's bucket and the label
        index's answers to the requirements it can narrow (`k=v`, `k in (..)`, `k`).
        """
        candidates: list[tuple[str, dict[str, Any]]] | None = None
        if namespace is not None:
            bucket = self._objects[plural].get(namespace, {})
            candidates = [(object_key(namespace, n), o) for n, o in bucket.items()]
        index = self._labels[plural]
        for requirement in requirements:
            if not requirement.narrows():
                continue
            by_value = index.get(requirement.key, {})
            values = by_value if requirement.op == "exists" else requirement.values
            size = sum(len(by_value.get(v, ())) for v in values)
            if candidates is not None and size >= len(candidates):
                continue
            keys = {k for v in values for k in by_value.get(v, ())}
            if namespace is not None:
                prefix = f"{namespace}/"
                keys = {k for k in keys if k.startswith(prefix)}
            found = [(k, self.get(plural, k)) for k in keys]
            candidates = [(k, o) for k, o in found if o is not None]
        if candidates is None:
            candidates = self._items(plural)
        self.stats.visited += len(candidates)
        return [
            obj
            for _, obj in sorted(candidates, key=lambda item: item[0])
            if all(r.matches(labels_of(obj)) for r in requirements)
        ]

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj`; the resourceVersion moves only when something really changed."""
        api_version, kind, namespaced = RESOURCES[plural]
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace") if namespaced else None
        if not namespaced:
            meta.pop("namespace", None)
        key = object_key(namespace, meta["name"])
        obj["apiVersion"], obj["kind"] = api_version, kind
        current = self.get(plural, key)
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
            meta["uid"] = uid(f"{plural}/{key}/{self._version}")
        else:
            for kept in ("creationTimestamp", "uid"):
                meta[kept] = current["metadata"].get(kept)
        meta["resourceVersion"] = self._next_version()
        self._store(plural, key, obj)
        self._pending[(plural, key)] = obj
        self._events.append((plural, namespace or "", meta["name"]))
        return obj

    def delete(self, plural: str, key: str) -> bool:
        if self._unstore(plural, key) is None:
            return False
        self._next_version()
        self._pending[(plural, key)] = None
        self._events.append((plural, *split_key(key)))
        return True
