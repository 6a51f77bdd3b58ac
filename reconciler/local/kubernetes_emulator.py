"""A Kubernetes API emulator on loopback that also plays Flux's (or Argo CD's) part.

Owns the subset of the Kubernetes API that `providers/kubernetes.py` uses, with
Kubernetes' shapes: namespaces, secrets (server-side apply, get, delete, list),
pods, resource quotas, nodes, and the HelmRelease / Application custom objects;
list metadata with resourceVersion, label selectors, `limit`/`continue` pages and
`Status` objects for errors. `sync()` is the GitOps stand-in: it makes the cluster
match `rendered/<id>/*.yaml` of a state repository working tree (namespace, quota,
release, one pod per service replica, ready once the demo's Secret exists) and
prunes what disappeared. A second loopback server answers the portal, candidate
and API-gateway health checks by Host header.

State is JSON under `state_dir`, so successive `--local` commands share one cluster.
May import the shared emulator server, the quantity helpers and PyYAML; never an adapter.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from reconciler.local.server import EmulatorServer, Faults, Request, Response
from reconciler.quantity import format_cpu, format_memory, parse_quantity

log = logging.getLogger(__name__)

STATE_FILE = "kubernetes.json"
MANAGED_BY = "app.kubernetes.io/managed-by"
DEMO_ID_LABEL = "demos.splits.network/id"
REDACTED = "REDACTED"
DEFAULT_SECRET_NAME = "supabase-credentials"  # noqa: S105 - a name, not a secret
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
_SHORT_NAMES = {
    "namespaces": ["ns"],
    "nodes": ["no"],
    "pods": ["po"],
    "resourcequotas": ["quota"],
    "helmreleases": ["hr"],
    "applications": ["app", "apps"],
}
_KIND_TO_PLURAL = {(api, kind): plural for plural, (api, kind, _) in RESOURCES.items()}

_CORE_PATH = re.compile(
    r"^/api/v1/(?:namespaces/(?P<ns>[^/]+)/)?(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?$"
)
_GROUP_PATH = re.compile(
    r"^/apis/(?P<gv>[^/]+/[^/]+)/(?:namespaces/(?P<ns>[^/]+)/)?(?P<plural>[a-z]+)"
    r"(?:/(?P<name>[^/]+))?$"
)
_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(code: int, message: str, *, name: str = "", kind: str = "") -> dict[str, Any]:
    """A `meta/v1 Status` failure, the body of every Kubernetes API error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if name or kind:
        body["details"] = {"name": name, "kind": kind}
    return body


def _error(code: int, message: str, *, name: str = "", kind: str = "") -> Response:
    return Response(code, status_body(code, message, name=name, kind=kind))


# --- label selectors ----------------------------------------------------------------------

_SET_REQ = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)$")
_EQ_REQ = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_KEY = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


def _split_requirements(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: `k=v`, `k!=v`, `k in (a,b)`, `k notin (..)`, `k`, `!k`.

    Raises ValueError on a selector the API server would reject.
    """
    if not selector:
        return True
    for requirement in _split_requirements(selector):
        if match := _SET_REQ.match(requirement):
            values = {v.strip() for v in match["values"].split(",") if v.strip()}
            present = match["key"] in labels and labels[match["key"]] in values
            if present != (match["op"] == "in"):
                return False
        elif match := _EQ_REQ.match(requirement):
            equal = labels.get(match["key"]) == match["value"]
            if equal != (match["op"] != "!="):
                return False
        elif match := _KEY.match(requirement):
            if (match["key"] in labels) == bool(match["neg"]):
                return False
        else:
            raise ValueError(f"unable to parse requirement: {requirement!r}")
    return True


# --- the emulator -------------------------------------------------------------------------


def _system_clock() -> datetime:
    # The emulator stands in for a remote server with its own clock.
    return datetime.now(UTC).replace(microsecond=0)


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(namespace: str | None, name: str) -> str:
    return f"{namespace or ''}/{name}"


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


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


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without the fields the server maintains, to tell a real change."""
    clean = copy.deepcopy(dict(obj))
    if clean.get("kind") == "Secret" and isinstance(clean.get("data"), dict):
        clean["data"] = {k: value_digest(str(v)) for k, v in clean["data"].items()}
    meta = clean.get("metadata") or {}
    for field in ("resourceVersion", "creationTimestamp", "uid", "managedFields", "generation"):
        meta.pop(field, None)
    return clean


class KubernetesEmulator:
    """The API handler, the GitOps stand-in, and their two loopback servers."""

    def __init__(
        self,
        state_dir: Path,
        *,
        source: Path | None = None,
        faults: Faults | None = None,
        domain: str = "demo.splits.network",
        url_patterns: Sequence[str] = (
            "{id}.portal.{domain}",
            "{id}.candidate.{domain}",
            "{id}.api.{domain}",
        ),
        secret_name: str = DEFAULT_SECRET_NAME,
        argo_namespace: str = "argocd",
        nodes: Mapping[str, tuple[str, str]] | None = None,
        clock: Callable[[], datetime] = _system_clock,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.source = Path(source) if source is not None else None
        self.secret_name = secret_name
        self.argo_namespace = argo_namespace
        self.clock = clock
        self._faults = faults
        self._lock = threading.RLock()
        self._fingerprint: tuple[object, ...] | None = None
        self._refreshed_at = -1
        self._host_patterns = [self._host_regex(p, domain) for p in url_patterns]
        self._state = self._load()
        if nodes is not None:
            self._set_nodes(nodes)
            self._save()
        elif not self._state["objects"]["nodes"]:
            self._set_nodes({"democtl-local": ("64", "256Gi")})  # saved with the next change
        self.api_server: EmulatorServer | None = None
        self.health_server: EmulatorServer | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> KubernetesEmulator:
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

    def _save(self) -> None:
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

    # --- object store ---------------------------------------------------------------------

    def _objects(self, plural: str) -> dict[str, dict[str, Any]]:
        objects: dict[str, dict[str, Any]] = self._state["objects"][plural]
        return objects

    def _next_version(self) -> str:
        self._state["resourceVersion"] += 1
        return str(self._state["resourceVersion"])

    def _put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj`; the resourceVersion moves only when something really changed."""
        api_version, kind, namespaced = RESOURCES[plural]
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace") if namespaced else None
        if not namespaced:
            meta.pop("namespace", None)
        key = _key(namespace, meta["name"])
        obj["apiVersion"], obj["kind"] = api_version, kind
        current = self._objects(plural).get(key)
        if current is not None and _comparable(current) == _comparable(obj):
            if plural == "secrets":
                current["data"] = obj.get("data", {})  # the values again, where only digests were
            return current
        if "spec" in obj:
            previous_generation = int((current or {}).get("metadata", {}).get("generation", 0))
            spec_changed = current is None or current.get("spec") != obj["spec"]
            meta["generation"] = previous_generation + 1 if spec_changed else previous_generation
        if current is None:
            meta["creationTimestamp"] = _timestamp(self.clock())
            meta["uid"] = self._uid(f"{plural}/{key}/{self._state['resourceVersion']}")
        else:
            for kept in ("creationTimestamp", "uid"):
                meta[kept] = current["metadata"].get(kept)
        meta["resourceVersion"] = self._next_version()
        self._objects(plural)[key] = obj
        return obj

    @staticmethod
    def _uid(seed: str) -> str:
        digest = hashlib.sha256(seed.encode()).hexdigest()
        return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"

    def _delete(self, plural: str, key: str) -> bool:
        if self._objects(plural).pop(key, None) is None:
            return False
        self._next_version()
        return True

    def _in_namespace(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        return [
            obj
            for obj in self._objects(plural).values()
            if obj["metadata"].get("namespace") == namespace
        ]

    def _set_nodes(self, nodes: Mapping[str, tuple[str, str]]) -> None:
        # _put keeps an unchanged node as it is, so starting the emulator again on the
        # same settings moves no resourceVersion (a `plan --local` changes nothing).
        for key in set(self._objects("nodes")) - {_key(None, name) for name in nodes}:
            self._delete("nodes", key)
        for name, (cpu, memory) in sorted(nodes.items()):
            self._put(
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

    # --- the HTTP API ---------------------------------------------------------------------

    @staticmethod
    def _parse_path(path: str) -> tuple[str, str | None, str | None, str] | None:
        """(plural, namespace, name, apiVersion) of a request path, or None."""
        if match := _CORE_PATH.match(path):
            return match["plural"], match["ns"], match["name"], "v1"
        if match := _GROUP_PATH.match(path):
            return match["plural"], match["ns"], match["name"], match["gv"]
        return None

    def route_of(self, request: Request) -> str:
        """Counter key: `LIST pods`, `GET secrets`, `PATCH secrets`, ..."""
        parsed = self._parse_path(request.path)
        if parsed is None:
            return f"{request.method} {request.path}"
        plural, _, name, _ = parsed
        verb = "LIST" if request.method == "GET" and name is None else request.method
        return f"{verb} {plural}"

    def _discovery(self, path: str) -> Response | None:
        """Just enough discovery (`/api`, `/apis`, resource lists) for kubectl to find its way."""
        path = path.rstrip("/")
        if path == "/version":
            return Response(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-democtl"})
        if path == "/api":
            return Response(200, {"kind": "APIVersions", "versions": ["v1"]})
        groups: dict[str, list[str]] = {}
        for plural, (api_version, _, _) in RESOURCES.items():
            groups.setdefault(api_version, []).append(plural)
        if path == "/apis":
            return Response(
                200,
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": gv.split("/")[0],
                            "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                            "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
                        }
                        for gv in sorted(groups)
                        if "/" in gv
                    ],
                },
            )
        group_version = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
        if group_version in groups and path in {"/api/v1", f"/apis/{group_version}"}:
            resources = []
            for plural in groups[group_version]:
                _, kind, namespaced = RESOURCES[plural]
                verbs = ["get", "list"] + (["patch", "delete"] if plural == "secrets" else [])
                resources.append(
                    {
                        "name": plural,
                        "singularName": kind.lower(),
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": verbs,
                        "shortNames": _SHORT_NAMES.get(plural, []),
                    }
                )
            return Response(
                200,
                {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": group_version,
                    "resources": resources,
                },
            )
        return None

    def handle(self, request: Request) -> Response:
        if request.method == "GET" and (discovered := self._discovery(request.path)):
            return discovered
        parsed = self._parse_path(request.path)
        if parsed is None or parsed[0] not in RESOURCES:
            return _error(404, f"the server could not find the requested resource ({request.path})")
        plural, namespace, name, api_version = parsed
        expected_api, _, namespaced = RESOURCES[plural]
        if api_version != expected_api or (namespace is not None and not namespaced):
            return _error(404, "the server could not find the requested resource")
        with self._lock:
            self._sync_locked()  # the GitOps controller catches up before every answer
            if request.method == "GET":
                if name is None:
                    return self._list(plural, namespace, request)
                obj = self._objects(plural).get(_key(namespace, name))
                if obj is None:
                    return _error(404, f'{plural} "{name}" not found', name=name, kind=plural)
                return Response(200, obj)
            if plural == "secrets" and namespace and name:
                if request.method == "PATCH":
                    return self._apply_secret(namespace, name, request)
                if request.method == "DELETE":
                    return self._delete_secret(namespace, name)
            return _error(405, f"the emulator does not support {request.method} on {plural}")

    def _list(self, plural: str, namespace: str | None, request: Request) -> Response:
        api_version, kind, _ = RESOURCES[plural]
        selector = request.arg("labelSelector")
        try:
            items = [
                obj
                for key, obj in sorted(self._objects(plural).items())
                if (namespace is None or obj["metadata"].get("namespace") == namespace)
                and selector_matches(selector, _labels(obj))
            ]
        except ValueError as exc:
            return _error(400, f"unable to parse requirement: {exc}")
        list_version = str(self._state["resourceVersion"])
        start = 0
        token = request.arg("continue")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = int(decoded["start"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                return _error(400, "continue key is not valid")
        metadata: dict[str, Any] = {"resourceVersion": list_version}
        limit_text = request.arg("limit")
        limit = int(limit_text) if limit_text and limit_text.isdigit() else 0
        page = items[start:]
        if limit > 0 and len(page) > limit:
            page = page[:limit]
            nxt = json.dumps({"start": start + limit, "rv": list_version}).encode()
            metadata["continue"] = base64.urlsafe_b64encode(nxt).decode()
            metadata["remainingItemCount"] = len(items) - start - limit
        return Response(
            200,
            {"kind": f"{kind}List", "apiVersion": api_version, "metadata": metadata, "items": page},
        )

    def _apply_secret(self, namespace: str, name: str, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/apply-patch+yaml":
            return _error(
                415,
                f"the emulator implements only server-side apply for secrets, not {content_type!r}",
            )
        manager = request.arg("fieldManager")
        if not manager:
            return _error(400, "PATCH with apply content type requires fieldManager")
        if self._objects("namespaces").get(_key(None, namespace)) is None:
            return _error(
                404, f'namespaces "{namespace}" not found', name=namespace, kind="namespaces"
            )
        try:
            patch = yaml.safe_load(request.body.decode() or "{}")
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            return _error(400, f"error decoding YAML: {exc}")
        if not isinstance(patch, dict):
            return _error(400, "the apply body must be an object")
        meta = patch.get("metadata") or {}
        if meta.get("name", name) != name or meta.get("namespace", namespace) != namespace:
            return _error(400, "the name or namespace of the object does not match the URL")
        data: dict[str, str] = {}
        for data_key, value in (patch.get("data") or {}).items():
            try:
                base64.b64decode(str(value), validate=True)
            except binascii.Error:
                return _error(422, f'Secret "{name}" is invalid: data[{data_key}]: not base64')
            data[data_key] = str(value)
        for data_key, value in (patch.get("stringData") or {}).items():
            data[data_key] = base64.b64encode(str(value).encode()).decode()
        current = self._objects("secrets").get(_key(namespace, name))
        force = request.arg("force") == "true"
        if current is not None:
            owner = next(
                (f["manager"] for f in current["metadata"].get("managedFields", [])), manager
            )
            same = _comparable({"kind": "Secret", "data": current.get("data") or {}}) == (
                _comparable({"kind": "Secret", "data": data})
            )
            if owner != manager and not force and not same:
                return _error(
                    409,
                    f'Apply failed with 1 conflict: conflict with "{owner}": .data',
                    name=name,
                    kind="secrets",
                )
        obj = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(meta.get("labels") or {}),
                "annotations": dict(meta.get("annotations") or {}),
                "managedFields": [{"manager": manager, "operation": "Apply", "apiVersion": "v1"}],
            },
            "type": patch.get("type", "Opaque"),
            "data": data,
        }
        if not obj["metadata"]["annotations"]:
            del obj["metadata"]["annotations"]
        created = current is None
        stored = self._put("secrets", obj)
        self._sync_locked()
        self._save()
        return Response(201 if created else 200, stored)

    def _delete_secret(self, namespace: str, name: str) -> Response:
        if not self._delete("secrets", _key(namespace, name)):
            return _error(404, f'secrets "{name}" not found', name=name, kind="secrets")
        self._sync_locked()
        self._save()
        return Response(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "kind": "secrets"},
            },
        )

    # --- the GitOps stand-in --------------------------------------------------------------

    def sync(self) -> None:
        """Make the cluster match `rendered/` of the source tree, as Flux or Argo CD would."""
        with self._lock:
            self._sync_locked()

    def _sync_locked(self) -> None:
        before = self._state["resourceVersion"]
        if self.source is not None:
            rendered = self.source / "rendered"
            wanted = (
                sorted(p.name for p in rendered.iterdir() if p.is_dir())
                if rendered.is_dir()
                else []
            )
            try:
                fingerprint: tuple[object, ...] | None = tuple(
                    (str(path), path.stat().st_mtime_ns, path.stat().st_size)
                    for demo_id in wanted
                    for path in sorted((rendered / demo_id).glob("*.y*ml"))
                ) + tuple(wanted)
            except OSError:
                fingerprint = self._fingerprint  # a tree being rewritten: sync next time
            if fingerprint != self._fingerprint:
                # Parse only when rendered/ changed: every API request syncs.
                for demo_id in wanted:
                    docs = self._read_rendered(rendered / demo_id)
                    if docs is not None:
                        self._apply_demo(demo_id, docs)
                for demo_id in sorted(set(self._state["synced"]) - set(wanted)):
                    self._prune(demo_id)
                self._fingerprint = fingerprint
        if self._state["resourceVersion"] != self._refreshed_at:
            # Workloads follow objects; when no object changed there is nothing to follow.
            self._refresh_workloads()
            self._refreshed_at = self._state["resourceVersion"]
        if self._state["resourceVersion"] != before:
            self._save()

    def _read_rendered(self, folder: Path) -> list[dict[str, Any]] | None:
        docs: list[dict[str, Any]] = []
        for path in sorted(folder.glob("*.y*ml")):
            try:
                docs.extend(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))
            except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
                # Flux keeps the last applied revision when a source fails to build.
                log.warning("demo %s: cannot read %s: %s", folder.name, path.name, exc)
                return None
        return docs

    def _apply_demo(self, demo_id: str, docs: list[dict[str, Any]]) -> None:
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
            plural = _KIND_TO_PLURAL.get((doc.get("apiVersion", ""), doc.get("kind", "")))
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
            existing = self._objects(plural).get(_key(meta.get("namespace"), meta["name"]))
            if existing is not None and "status" in existing and plural != "namespaces":
                obj["status"] = existing["status"]  # the controller owns status
            self._put(plural, obj)
            tracked.append([plural, _key(meta.get("namespace"), meta["name"])])
        previous = self._state["synced"].get(demo_id, {}).get("objects", [])
        for plural, key in previous:
            if [plural, key] not in tracked:
                self._delete(plural, key)
        self._state["synced"][demo_id] = {"namespace": namespace, "objects": tracked}

    def _prune(self, demo_id: str) -> None:
        entry = self._state["synced"].pop(demo_id)
        namespace = entry["namespace"]
        for plural, key in entry["objects"]:
            self._delete(plural, key)
        for plural, (_, _, namespaced) in RESOURCES.items():
            if namespaced:
                for obj in self._in_namespace(plural, namespace):
                    self._delete(plural, _key(namespace, obj["metadata"]["name"]))
        self._delete("namespaces", _key(None, namespace))
        log.info("demo %s: namespace %s pruned (rendered/ is gone)", demo_id, namespace)

    # --- controllers: releases, pods, quotas ----------------------------------------------

    def _releases(self) -> Iterable[tuple[str, dict[str, Any]]]:
        for plural in ("helmreleases", "applications"):
            for obj in list(self._objects(plural).values()):
                yield plural, obj

    @staticmethod
    def release_values(plural: str, release: Mapping[str, Any]) -> dict[str, Any]:
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

    @staticmethod
    def _release_name(plural: str, release: Mapping[str, Any]) -> str:
        spec = release.get("spec") or {}
        if plural == "helmreleases":
            return str(spec.get("releaseName") or release["metadata"]["name"])
        helm = (spec.get("source") or {}).get("helm") or {}
        return str(helm.get("releaseName") or release["metadata"]["name"])

    def _target_namespace(self, plural: str, release: Mapping[str, Any]) -> str:
        spec = release.get("spec") or {}
        if plural == "applications":
            return str((spec.get("destination") or {}).get("namespace") or "")
        return str(spec.get("targetNamespace") or release["metadata"].get("namespace"))

    def _secret_refs(self, plural: str, release: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(namespace, name) of the Secrets the release waits for."""
        namespace = self._target_namespace(plural, release)
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

    def _refresh_workloads(self) -> None:
        for plural, release in self._releases():
            if (release.get("spec") or {}).get("suspend") is True:
                continue  # a suspended HelmRelease is left as it is, status included
            namespace = self._target_namespace(plural, release)
            if self._objects("namespaces").get(_key(None, namespace)) is None:
                continue
            missing = [
                f"{ns}/{name}"
                for ns, name in self._secret_refs(plural, release)
                if _key(ns, name) not in self._objects("secrets")
            ]
            pods = self._reconcile_pods(plural, release, namespace, ready=not missing)
            self._set_release_status(plural, release, pods, missing)
        for quota in list(self._objects("resourcequotas").values()):
            self._set_quota_status(quota)

    def _reconcile_pods(
        self, plural: str, release: dict[str, Any], namespace: str, *, ready: bool
    ) -> list[dict[str, Any]]:
        name = self._release_name(plural, release)
        values = self.release_values(plural, release)
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
        for pod in self._in_namespace("pods", namespace):
            if pod["metadata"]["name"] not in wanted:
                self._delete("pods", _key(namespace, pod["metadata"]["name"]))
        return [self._put("pods", pod) for pod in wanted.values()]

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
        existing = self._objects("pods").get(_key(namespace, pod_name)) or {}
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
                        "uid": self._uid(f"replicasets/{namespace}/{release}-{service}"),
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
        stamp = _timestamp(self.clock())
        old = copy.deepcopy(release.get("status") or {})
        new: dict[str, Any]
        if plural == "helmreleases":
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
            self._put(plural, updated)

    def _set_quota_status(self, quota: dict[str, Any]) -> None:
        hard = dict((quota.get("spec") or {}).get("hard") or {})
        pods = self._in_namespace("pods", quota["metadata"]["namespace"])
        totals: dict[str, Decimal] = {}
        for pod in pods:
            for container in pod["spec"]["containers"]:
                resources = container.get("resources") or {}
                for section in ("requests", "limits"):
                    for resource, value in (resources.get(section) or {}).items():
                        key = f"{section}.{resource}"
                        totals[key] = totals.get(key, Decimal(0)) + parse_quantity(str(value))
        used: dict[str, str] = {}
        for resource in hard:
            counted = {"cpu": "requests.cpu", "memory": "requests.memory"}.get(resource, resource)
            if resource in {"pods", "count/pods"}:
                used[resource] = str(len(pods))
            elif counted.endswith("cpu"):
                used[resource] = format_cpu(totals.get(counted, Decimal(0)))
            elif counted.endswith("memory"):
                used[resource] = format_memory(totals.get(counted, Decimal(0)))
        status = {"hard": hard, "used": used}
        if quota.get("status") != status:
            updated = copy.deepcopy(quota)
            updated["status"] = status
            self._put("resourcequotas", updated)

    # --- test and operator hooks ----------------------------------------------------------

    def record_restarts(self, namespace: str, service: str, restarts: int) -> None:
        """Make every pod of `service` report `restarts` container restarts (a crash loop)."""
        with self._lock:
            for pod in self._in_namespace("pods", namespace):
                if pod["metadata"]["labels"].get("app.kubernetes.io/name") == service:
                    updated = copy.deepcopy(pod)
                    for status in updated["status"]["containerStatuses"]:
                        status["restartCount"] = restarts
                    self._put("pods", updated)
            self._save()

    def add_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        """Create a namespace outside of rendered/ (a foreign or hand-made one)."""
        with self._lock:
            self._put(
                "namespaces",
                {"metadata": {"name": name, "labels": dict(labels)}, "status": {"phase": "Active"}},
            )
            self._save()

    # --- health endpoints -----------------------------------------------------------------

    @staticmethod
    def _host_regex(pattern: str, domain: str) -> re.Pattern[str]:
        text = re.escape(pattern).replace(re.escape("{id}"), r"(?P<id>[a-z0-9-]+)")
        text = text.replace(re.escape("{domain}"), re.escape(domain))
        return re.compile(f"^{text}$")

    def demo_of_host(self, host: str) -> str | None:
        host = host.split(":", maxsplit=1)[0].lower()
        for pattern in self._host_patterns:
            if match := pattern.match(host):
                return match["id"]
        return None

    def demo_ready(self, demo_id: str) -> bool:
        """All pods of the demo's namespace ready (and at least one)."""
        with self._lock:
            self._sync_locked()
            entry = self._state["synced"].get(demo_id)
            if entry is None:
                return False
            pods = self._in_namespace("pods", entry["namespace"])
            return bool(pods) and all(
                any(c["type"] == "Ready" and c["status"] == "True" for c in pod_conditions)
                for pod_conditions in (p["status"]["conditions"] for p in pods)
            )

    def handle_health(self, request: Request) -> Response:
        demo_id = self.demo_of_host(request.headers.get("host", ""))
        if demo_id is None:
            return Response(404, b"default backend - 404", {"Content-Type": "text/plain"})
        if request.path.rstrip("/") not in {"/health", "/healthz", ""}:
            return Response(404, {"status": "not found"})
        if self.demo_ready(demo_id):
            return Response(200, {"status": "ok", "demo": demo_id})
        return Response(503, {"status": "unavailable", "demo": demo_id})

    # --- inspection -----------------------------------------------------------------------

    def inspect(self) -> dict[str, Any]:
        """The cluster as data for `democtl local inspect`; Secret values are REDACTED."""
        with self._lock:
            objects = self._state["objects"]
            namespaces = [
                {
                    "name": ns["metadata"]["name"],
                    "labels": _labels(ns),
                    "phase": ns.get("status", {}).get("phase"),
                }
                for ns in objects["namespaces"].values()
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
                for p in objects["pods"].values()
            ]
            secrets = [
                {
                    "namespace": s["metadata"]["namespace"],
                    "name": s["metadata"]["name"],
                    "labels": _labels(s),
                    "annotations": dict(s["metadata"].get("annotations") or {}),
                    "type": s.get("type", "Opaque"),
                    "data": dict.fromkeys(sorted(s.get("data") or {}), REDACTED),
                    "resourceVersion": s["metadata"]["resourceVersion"],
                }
                for s in objects["secrets"].values()
            ]
            releases = [
                {
                    "kind": obj["kind"],
                    "namespace": obj["metadata"]["namespace"],
                    "name": obj["metadata"]["name"],
                    "status": obj.get("status", {}),
                }
                for plural in ("helmreleases", "applications")
                for obj in objects[plural].values()
            ]
            quotas = [
                {
                    "namespace": q["metadata"]["namespace"],
                    "name": q["metadata"]["name"],
                    "status": q.get("status", {}),
                }
                for q in objects["resourcequotas"].values()
            ]
            nodes = [
                {"name": n["metadata"]["name"], "allocatable": n["status"]["allocatable"]}
                for n in objects["nodes"].values()
            ]
            return {
                "resourceVersion": str(self._state["resourceVersion"]),
                "namespaces": namespaces,
                "pods": pods,
                "secrets": secrets,
                "releases": releases,
                "resourceQuotas": quotas,
                "nodes": nodes,
            }
