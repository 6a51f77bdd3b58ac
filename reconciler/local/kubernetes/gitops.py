"""The GitOps controller stand-in: Flux's (or Argo CD's) part, syncing `rendered/` into the store.

Owns reading `rendered/<id>/*.yaml` of a state repository working tree, applying
each demo's documents (Namespace, ResourceQuota, HelmRelease or Application; kinds
the emulator does not serve are accepted and ignored), the record of what it applied
per demo, and pruning a demo whose directory disappeared together with everything
in its namespace. It never creates Secrets: democtl does. A demo folder is parsed
only when its files changed (their names, sizes and mtimes are kept with what was
applied, so a restart does not parse an unchanged tree again), and only folders the
tree watch reports changed are looked at.

Under Flux it also plays the one Kustomization of `clusters/flux/democtl.yaml`
(path `./rendered`, prune: true), as kustomize-controller does
(fluxcd/kustomize-controller, internal/controller/kustomization_controller.go):
an absent path fails it (Ready=False, ArtifactFailed, "kustomization path not
found") before anything is applied or pruned; `rendered/kustomization.yaml`, when
present, decides which demo folders are built (one it cannot build fails the same
way, BuildFailed, and prunes nothing); without it every folder is (Flux generates a
kustomization.yaml for a path without one); an empty list prunes all it applied.
Under Argo CD the ApplicationSet's git directory generator (`rendered/*`) sees no
folder when `rendered/` is gone, so every demo is pruned. May import the store, the
tree watch and PyYAML.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler.local.kubernetes.store import (
    KIND_TO_PLURAL,
    RESOURCES,
    ObjectStore,
    object_key,
    timestamp,
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


# clusters/flux/democtl.yaml: the Kustomization that syncs rendered/ (namespace, name)
KUSTOMIZATION = ("flux-system", "democtl-demos")
INDEX = "kustomization.yaml"


class BuildError(Exception):
    """`rendered/` cannot be built: the Kustomization fails and nothing is applied or pruned."""


def _listed_folders(text: str) -> set[str]:
    """The demo folders `rendered/kustomization.yaml` lists under `resources`."""
    try:
        doc = yaml.load(text, Loader=_Loader) or {}  # noqa: S506 - a safe loader, C if available
    except yaml.YAMLError as exc:
        raise BuildError(f"kustomize build failed: {INDEX}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resources") or [], list):
        raise BuildError(f"kustomize build failed: {INDEX}: resources must be a list")
    folders = set()
    for entry in doc.get("resources") or []:
        name = str(entry).strip().removeprefix("./").rstrip("/")
        if name and "/" not in name and name not in {".", ".."}:
            folders.add(name)
    return folders


# What clients (democtl, the flux and argocd CLIs) set on a release and rendered/ never
# holds: server-side apply by kustomize-controller leaves another manager's fields alone.
_REQUEST_ANNOTATIONS = ("reconcile.fluxcd.io/", "argocd.argoproj.io/refresh")


def _keep_requests(existing: dict[str, Any], obj: dict[str, Any]) -> None:
    """Carry a client's request annotations (and Argo CD's pending `operation`) over."""
    given = obj["metadata"].get("annotations") or {}
    kept = {
        k: v
        for k, v in (existing["metadata"].get("annotations") or {}).items()
        if k.startswith(_REQUEST_ANNOTATIONS) and k not in given
    }
    if kept:
        obj["metadata"]["annotations"] = {**given, **kept}
    if "operation" in existing and "operation" not in obj:
        obj["operation"] = existing["operation"]


class GitOpsController:
    """Makes the store match `source/rendered/`, as Flux or Argo CD would (store lock held)."""

    def __init__(
        self,
        store: ObjectStore,
        source: Path | None,
        *,
        argo_namespace: str,
        gitops: str = "flux",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.argo_namespace = argo_namespace
        self.gitops = gitops
        self.clock = clock or store.clock
        # Folders that failed to parse, by the fingerprint they failed at: tried again
        # only once they change (Flux keeps the last applied revision meanwhile).
        self._failed: dict[str, Fingerprint] = {}
        self._retry: set[str] = set()
        self._watch: TreeWatch | None = None
        # Flux: rendered/kustomization.yaml as last read ((mtime_ns, size), or None when
        # absent) and the folders it lists (None: no index, every folder is built)
        self._index_stat: tuple[int, int] | bool | None = False  # False: never read
        self._listed: set[str] | None = None
        self._rescan = False  # a failed build consumed the watch's events: look at all

    def sync(self) -> None:
        if self.source is None:
            return
        rendered = self.source / "rendered"
        if self._watch is None:
            self._watch = TreeWatch(rendered)
        changed = self._watch.changed()
        if self.gitops == "flux":
            try:
                if self._read_index(rendered) or self._rescan:
                    changed = None
                self._rescan = False
                applied = self._sync_folders(rendered, changed)
            except BuildError as exc:
                self._rescan = True
                if self.store.synced or self._kustomization_ready() is not None:
                    # (a cluster that never saw rendered/ shows no Kustomization yet: a
                    # `plan --local` on a new repository leaves the world as it was)
                    self._kustomization_status(False, exc.args[1], exc.args[0])
                return
            if applied or self._kustomization_stale():
                self._kustomization_status(True, "ReconciliationSucceeded", "")
        else:
            self._sync_folders(rendered, changed)

    def _read_index(self, rendered: Path) -> bool:
        """Whether what the Kustomization builds may have changed; BuildError if it cannot."""
        index = rendered / INDEX
        try:
            stat = index.stat()
        except OSError:
            if not rendered.is_dir():
                # kustomize-controller checks the path before it builds or prunes anything
                raise BuildError(
                    f"kustomization path not found: stat {rendered}: no such file or directory",
                    "ArtifactFailed",
                ) from None
            seen: tuple[int, int] | None = None
        else:
            seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._index_stat:
            return False
        try:
            listed = _listed_folders(index.read_text()) if seen is not None else None
        except OSError as exc:
            raise BuildError(f"kustomize build failed: {INDEX}: {exc}", "BuildFailed") from None
        except BuildError as exc:
            raise BuildError(exc.args[0], "BuildFailed") from None
        self._index_stat, self._listed = seen, listed
        return True

    def _sync_folders(self, rendered: Path, changed: set[str] | None) -> bool:
        """Apply the folders that changed, prune the ones that went; True if any did."""
        listed = self._listed if self.gitops == "flux" else None
        if changed is None:  # look at everything
            present = (
                sorted(p.name for p in rendered.iterdir() if p.is_dir())
                if rendered.is_dir()
                else []
            )
            wanted = present if listed is None else sorted(set(present) & listed)
            look, gone = wanted, set(self.store.synced) - set(wanted)
            missing = set() if listed is None else listed - set(present)
        else:  # look at what changed, and at what could not be read last time
            changed |= self._retry
            look = sorted(
                d for d in changed if (listed is None or d in listed) and (rendered / d).is_dir()
            )
            gone = {d for d in changed if d in self.store.synced} - set(look)
            missing = {d for d in changed if listed is not None and d in listed} - set(look)
        if missing:
            # a listed folder that is not there: kustomize cannot build, Flux prunes nothing
            self._retry |= set(look) | gone | missing
            first = sorted(missing)[0]
            raise BuildError(
                f"kustomize build failed: accumulating resources from '{first}': "
                "must resolve to a file or directory",
                "BuildFailed",
            )
        self._retry = set()
        applied = False
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
                applied = True
        for demo_id in sorted(gone):
            self._failed.pop(demo_id, None)
            self._prune(demo_id)
            applied = True
        return applied

    # --- the Kustomization's status -------------------------------------------------------

    def _kustomization_stale(self) -> bool:
        ready = self._kustomization_ready()
        return ready is None or ready.get("status") != "True"

    def _kustomization_ready(self) -> dict[str, Any] | None:
        found = self.store.get("kustomizations", object_key(*KUSTOMIZATION))
        conditions = ((found or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == "Ready"), None)

    def _kustomization_status(self, ready: bool, reason: str, message: str) -> None:
        """Ready=True with the applied revision, or Ready=False with the failure."""
        namespace, name = KUSTOMIZATION
        current = self.store.get("kustomizations", object_key(namespace, name))
        status = dict((current or {}).get("status") or {})
        if ready:
            digest = hashlib.sha256("\n".join(sorted(self.store.synced)).encode()).hexdigest()
            revision = f"sha256:{digest}"
            status["lastAppliedRevision"] = revision
            # kustomization_controller.go: MarkTrue(Ready, ReconciliationSucceeded, ...)
            message = f"Applied revision: {revision}"
        previous = self._kustomization_ready() or {}
        condition: dict[str, Any] = {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": reason,
            "message": message,
        }
        same = all(previous.get(k) == v for k, v in condition.items())
        stamp = previous.get("lastTransitionTime") if same else timestamp(self.clock())
        condition["lastTransitionTime"] = stamp
        status["observedGeneration"] = 1
        status["conditions"] = [condition]
        obj = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "democtl"},
            },
            "spec": {
                "interval": "5m",
                "path": "./rendered",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "democtl-state"},
            },
            "status": status,
        }
        self.store.put("kustomizations", obj)

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
            if plural is None or plural in {"secrets", "pods", "nodes", "kustomizations"}:
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
            if existing is not None:
                _keep_requests(existing, obj)
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
