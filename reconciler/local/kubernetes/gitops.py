"""The GitOps controller stand-in: Flux's (or Argo CD's) part, syncing `rendered/` into the store.

Owns reading `rendered/<id>/*.yaml` of a state repository working tree, applying
each demo's documents (Namespace, ResourceQuota, HelmRelease or Application; kinds
the emulator does not serve are accepted and ignored), the record of what it applied
per demo, and pruning a demo whose directory disappeared together with everything
in its namespace. It never creates Secrets: democtl does. A demo folder is parsed
only when its files changed (their names, sizes and mtimes are kept with what was
applied, so a restart does not parse an unchanged tree again), and only folders the
tree watch reports changed are looked at. May import the store, the tree watch and
PyYAML.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from reconciler.local.kubernetes.store import (
    KIND_TO_PLURAL,
    RESOURCES,
    ObjectStore,
    object_key,
)
from reconciler.local.kubernetes.treewatch import TreeWatch

log = logging.getLogger(__name__)

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Fingerprint = list[list[object]]  # [[file name, mtime_ns, size], ...], as JSON keeps it


def _manifests(folder: Path) -> list[os.DirEntry[str]]:
    """The `*.y*ml` files of a demo folder, by name (what `folder.glob("*.y*ml")` finds)."""
    with os.scandir(folder) as entries:
        found = [
            e for e in entries if not e.name.startswith(".") and fnmatch.fnmatch(e.name, "*.y*ml")
        ]
    return sorted(found, key=lambda e: e.name)


def fingerprint(folder: Path) -> Fingerprint:
    """What tells a rewritten demo folder from an untouched one; raises OSError mid-rewrite."""
    result: Fingerprint = []
    for entry in _manifests(folder):
        stat = entry.stat()
        result.append([entry.name, stat.st_mtime_ns, stat.st_size])
    return result


class GitOpsController:
    """Makes the store match `source/rendered/`, as Flux or Argo CD would (store lock held)."""

    def __init__(self, store: ObjectStore, source: Path | None, *, argo_namespace: str) -> None:
        self.store = store
        self.source = source
        self.argo_namespace = argo_namespace
        # Folders that failed to parse, by the fingerprint they failed at: tried again
        # only once they change (Flux keeps the last applied revision meanwhile).
        self._failed: dict[str, Fingerprint] = {}
        self._retry: set[str] = set()
        self._watch: TreeWatch | None = None

    def sync(self) -> None:
        if self.source is None:
            return
        rendered = self.source / "rendered"
        if self._watch is None:
            self._watch = TreeWatch(rendered)
        changed = self._watch.changed()
        if changed is None:  # look at everything
            wanted = (
                sorted(p.name for p in rendered.iterdir() if p.is_dir())
                if rendered.is_dir()
                else []
            )
            look, gone = wanted, set(self.store.synced) - set(wanted)
        else:  # look at what changed, and at what could not be read last time
            changed |= self._retry
            look = sorted(d for d in changed if (rendered / d).is_dir())
            gone = {d for d in changed if d in self.store.synced} - set(look)
        self._retry = set()
        for demo_id in look:
            folder = rendered / demo_id
            try:
                seen = fingerprint(folder)
            except OSError:
                self._retry.add(demo_id)  # a folder being rewritten: sync it next time
                continue
            record = self.store.synced.get(demo_id) or {}
            if seen == record.get("files") or seen == self._failed.get(demo_id):
                continue  # parse only when the folder changed: every API request syncs
            docs = self._read_rendered(folder)
            if docs is None:
                self._failed[demo_id] = seen
            else:
                self._failed.pop(demo_id, None)
                self._apply_demo(demo_id, docs, seen)
        for demo_id in sorted(gone):
            self._failed.pop(demo_id, None)
            self._prune(demo_id)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def _read_rendered(self, folder: Path) -> list[dict[str, Any]] | None:
        docs: list[dict[str, Any]] = []
        for path in sorted(folder.glob("*.y*ml")):
            try:
                loaded = yaml.load_all(
                    path.read_text(), Loader=_Loader
                )  # a safe loader, C if available
                docs.extend(d for d in loaded if isinstance(d, dict))
            except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
                # Flux keeps the last applied revision when a source fails to build.
                log.warning("demo %s: cannot read %s: %s", folder.name, path.name, exc)
                return None
        return docs

    def _apply_demo(self, demo_id: str, docs: list[dict[str, Any]], files: Fingerprint) -> None:
        store = self.store
        namespace = next(
            (
                str(d["metadata"]["name"])
                for d in docs
                if d.get("kind") == "Namespace" and (d.get("metadata") or {}).get("name")
            ),
            demo_id,
        )
        tracked: list[list[str]] = []
        for doc in docs:
            plural = KIND_TO_PLURAL.get((doc.get("apiVersion", ""), doc.get("kind", "")))
            if plural is None or plural in {"secrets", "pods", "nodes"}:
                continue  # LimitRange, NetworkPolicy, ...: accepted, not served
            if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
                log.warning("demo %s: a %s without metadata.name is skipped", demo_id, plural)
                continue
            obj = copy.deepcopy(doc)
            meta = obj.setdefault("metadata", {})
            if plural == "namespaces":
                obj["status"] = {"phase": "Active"}
            elif plural == "applications":
                meta.setdefault("namespace", self.argo_namespace)
            else:
                meta.setdefault("namespace", namespace)
            existing = store.get(plural, object_key(meta.get("namespace"), meta["name"]))
            if existing is not None and "status" in existing and plural != "namespaces":
                obj["status"] = existing["status"]  # the controller owns status
            store.put(plural, obj)
            tracked.append([plural, object_key(meta.get("namespace"), meta["name"])])
        previous = store.synced.get(demo_id, {}).get("objects", [])
        for plural, key in previous:
            if [plural, key] not in tracked:
                store.delete(plural, key)
        store.set_synced(demo_id, {"namespace": namespace, "objects": tracked, "files": files})

    def _prune(self, demo_id: str) -> None:
        store = self.store
        entry = store.pop_synced(demo_id)
        namespace = entry["namespace"]
        for plural, key in entry["objects"]:
            store.delete(plural, key)
        for plural, (_, _, namespaced) in RESOURCES.items():
            if namespaced:
                for obj in store.in_namespace(plural, namespace):
                    store.delete(plural, object_key(namespace, obj["metadata"]["name"]))
        store.delete("namespaces", object_key(None, namespace))
        log.info("demo %s: namespace %s pruned (rendered/ is gone)", demo_id, namespace)
