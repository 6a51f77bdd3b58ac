"""The emulated Kubernetes API server: HTTP routing, discovery, reads, lists and Secret writes.

Owns the request side of the part of the Kubernetes API that `providers/kubernetes.py`
uses, with Kubernetes' shapes: paths of the core and named groups, discovery enough
for kubectl, the access policy's 403s, SelfSubjectAccessReviews and CRD reads
(`access`), GET of one object, lists with resourceVersion, label selectors and
`limit`/`continue` pages, server-side apply and delete of Secrets, and `Status`
objects for errors. Before every answer (and after every write) it lets the
controllers catch up through the `reconcile` callback, as a real cluster's
controllers would have by the time a client looks. May import the store, the
selectors, the shared emulator server and PyYAML.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable
from typing import Any

import yaml

from reconciler.local.kubernetes.access import CRD_API, AccessPolicy, crd_object
from reconciler.local.kubernetes.selectors import parse_selector
from reconciler.local.kubernetes.store import (
    RESOURCES,
    ObjectStore,
    comparable,
    object_key,
)
from reconciler.local.server import Request, Response

_SHORT_NAMES = {
    "namespaces": ["ns"],
    "nodes": ["no"],
    "pods": ["po"],
    "resourcequotas": ["quota"],
    "helmreleases": ["hr"],
    "applications": ["app", "apps"],
}
# the releases democtl annotates (a reset) with a JSON merge patch
_PATCHABLE = frozenset({"helmreleases", "applications"})
# what the server keeps whatever a patch says: identity and the fields it maintains
_SERVER_FIELDS = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "generation")
_CORE_PATH = re.compile(
    r"^/api/v1/(?:namespaces/(?P<ns>[^/]+)/)?(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?$"
)
_GROUP_PATH = re.compile(
    r"^/apis/(?P<gv>[^/]+/[^/]+)/(?:namespaces/(?P<ns>[^/]+)/)?(?P<plural>[a-z]+)"
    r"(?:/(?P<name>[^/]+))?$"
)
_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
_CRD_PATH = re.compile(
    r"^/apis/apiextensions\.k8s\.io/v1/customresourcedefinitions(?:/(?P<name>[^/]+))?$"
)
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
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


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def parse_path(path: str) -> tuple[str, str | None, str | None, str] | None:
    """(plural, namespace, name, apiVersion) of a request path, or None."""
    if match := _CORE_PATH.match(path):
        return match["plural"], match["ns"], match["name"], "v1"
    if match := _GROUP_PATH.match(path):
        return match["plural"], match["ns"], match["name"], match["gv"]
    return None


def route_of(request: Request) -> str:
    """Counter key: `LIST pods`, `GET secrets`, `PATCH secrets`, ..."""
    parsed = parse_path(request.path)
    if parsed is None:
        return f"{request.method} {request.path}"
    plural, _, name, _ = parsed
    verb = "LIST" if request.method == "GET" and name is None else request.method
    return f"{verb} {plural}"


def _discovery(path: str) -> Response | None:
    """Just enough discovery (`/api`, `/apis`, resource lists) for kubectl to find its way."""
    path = path.rstrip("/")
    if path == "/version":
        # version.Info, every field the API server fills (k8s.io/apimachinery/pkg/version)
        return Response(
            200,
            {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0-democtl",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2024-08-13T00:00:00Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            },
        )
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
            verbs = ["get", "list"] + (
                ["patch", "delete"]
                if plural == "secrets"
                else ["patch"]
                if plural in _PATCHABLE
                else []
            )
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


class ApiServer:
    """Answers API requests from the store; `reconcile` runs the controllers (store lock held)."""

    def __init__(
        self,
        store: ObjectStore,
        reconcile: Callable[[], None],
        access: AccessPolicy | None = None,
    ) -> None:
        self.store = store
        self.reconcile = reconcile
        self.access = access or AccessPolicy()
        self._listed: dict[tuple[str, str | None, str, int], list[dict[str, Any]]] = {}

    def handle(self, request: Request) -> Response:
        if request.method == "GET" and (discovered := _discovery(request.path)):
            return discovered
        if request.path.rstrip("/") == _REVIEW_PATH:
            return self._review(request)
        if crd := _CRD_PATH.match(request.path):
            return self._crd(request, crd["name"])
        parsed = parse_path(request.path)
        if parsed is None or parsed[0] not in RESOURCES:
            return _error(404, f"the server could not find the requested resource ({request.path})")
        plural, namespace, name, api_version = parsed
        expected_api, _, namespaced = RESOURCES[plural]
        if api_version != expected_api or (namespace is not None and not namespaced):
            return _error(404, "the server could not find the requested resource")
        group = api_version.rpartition("/")[0]
        verb = _VERBS.get(request.method, "get" if name else "list")
        if not self.access.allowed(group, plural, verb):
            return self._forbidden(group, plural, verb, namespace, name)
        with self.store.lock:
            self.reconcile()  # the GitOps controller catches up before every answer
            if request.method == "GET":
                if name is None:
                    return self._list(plural, namespace, request)
                obj = self.store.get(plural, object_key(namespace, name))
                if obj is None and plural == "namespaces":
                    obj = self.access.namespace(name)  # one the cluster had before democtl
                if obj is None:
                    return _error(404, f'{plural} "{name}" not found', name=name, kind=plural)
                return Response(200, obj)
            if plural in _PATCHABLE and namespace and name and request.method == "PATCH":
                return self._merge_patch(plural, namespace, name, request)
            if plural == "secrets" and namespace and name:
                if request.method == "PATCH":
                    # an apply that creates is authorised as a create too (kubernetes.io/
                    # docs/reference/using-api/api-concepts/#patch-and-apply)
                    absent = self.store.get(plural, object_key(namespace, name)) is None
                    if absent and not self.access.allowed(group, plural, "create"):
                        return self._forbidden(group, plural, "create", namespace, name)
                    return self._apply_secret(namespace, name, request)
                if request.method == "DELETE":
                    return self._delete_secret(namespace, name)
            return _error(405, f"the emulator does not support {request.method} on {plural}")

    def _list(self, plural: str, namespace: str | None, request: Request) -> Response:
        api_version, kind, _ = RESOURCES[plural]
        selector = request.arg("labelSelector")
        try:
            requirements = parse_selector(selector)
        except ValueError as exc:
            return _error(400, f"unable to parse requirement: {exc}")
        # The next pages of a list come from the first page's answer while nothing
        # changes, as the API server serves them at the first page's resourceVersion:
        # a next page costs its own items, not the whole list again.
        token = request.arg("continue")
        query = (plural, namespace, selector or "", self.store.version)
        items = self._listed.get(query) if token else None
        if items is None:
            items = self.store.select(plural, namespace, requirements)
            if plural == "namespaces":
                items = self._with_system_namespaces(items, requirements)
            self._listed = {query: items}
        list_version = str(self.store.version)
        start = 0
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

    def _with_system_namespaces(
        self, items: list[dict[str, Any]], requirements: list[Any]
    ) -> list[dict[str, Any]]:
        held = {item["metadata"]["name"] for item in items}
        extra = [
            obj
            for name in self.access.namespaces
            if name not in held
            and self.store.get("namespaces", object_key(None, name)) is None
            and (obj := self.access.namespace(name)) is not None
            and all(r.matches(obj["metadata"]["labels"]) for r in requirements)
        ]
        return sorted([*items, *extra], key=lambda o: str(o["metadata"]["name"]))

    def _forbidden(
        self, group: str, resource: str, verb: str, namespace: str | None, name: str | None
    ) -> Response:
        message = self.access.forbidden_message(group, resource, verb, namespace, name)
        return _error(403, message, name=name or "", kind=resource)

    def _review(self, request: Request) -> Response:
        if request.method != "POST":
            return _error(405, "selfsubjectaccessreviews accept only POST (create)")
        try:
            body = request.json()
        except ValueError:
            return _error(400, "the request body is not JSON")
        code, answer = self.access.review(body if isinstance(body, dict) else {})
        return Response(code, answer) if code < 400 else _error(code, str(answer["message"]))

    def _crd(self, request: Request, name: str | None) -> Response:
        group, plural = "apiextensions.k8s.io", "customresourcedefinitions"
        if request.method != "GET":
            return _error(405, f"the emulator does not support {request.method} on {plural}")
        verb = "get" if name else "list"
        if not self.access.allowed(group, plural, verb):
            return self._forbidden(group, plural, verb, None, name)
        if name is None:
            items = [crd_object(n) for n in sorted(self.access.crds)]
            return Response(
                200,
                {
                    "kind": "CustomResourceDefinitionList",
                    "apiVersion": CRD_API,
                    "metadata": {"resourceVersion": "1"},
                    "items": items,
                },
            )
        if name not in self.access.crds:
            return _error(404, f'{plural}.{group} "{name}" not found', name=name, kind=plural)
        return Response(200, crd_object(name))

    def _apply_secret(self, namespace: str, name: str, request: Request) -> Response:
        # Server-side apply: https://kubernetes.io/docs/reference/using-api/server-side-apply/
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/apply-patch+yaml":
            return _error(
                415,
                f"the emulator implements only server-side apply for secrets, not {content_type!r}",
            )
        manager = request.arg("fieldManager")
        if not manager:
            return _error(400, "PATCH with apply content type requires fieldManager")
        if self.store.get("namespaces", object_key(None, namespace)) is None:
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
        current = self.store.get("secrets", object_key(namespace, name))
        force = request.arg("force") == "true"
        if current is not None:
            owner = next(
                (f["manager"] for f in current["metadata"].get("managedFields", [])), manager
            )
            same = comparable({"kind": "Secret", "data": current.get("data") or {}}) == (
                comparable({"kind": "Secret", "data": data})
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
        stored = self.store.put("secrets", obj)
        self.reconcile()
        self.store.save()
        return Response(201 if created else 200, stored)

    def _delete_secret(self, namespace: str, name: str) -> Response:
        if not self.store.delete("secrets", object_key(namespace, name)):
            return _error(404, f'secrets "{name}" not found', name=name, kind="secrets")
        self.reconcile()
        self.store.save()
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

    def _merge_patch(self, plural: str, namespace: str, name: str, request: Request) -> Response:
        # `kubectl annotate` and `kubectl patch --type merge` send a JSON merge patch:
        # https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/merge-patch+json":
            return _error(
                415,
                f"the emulator implements only merge patches for {plural}, not {content_type!r}",
            )
        current = self.store.get(plural, object_key(namespace, name))
        if current is None:
            return _error(404, f'{plural} "{name}" not found', name=name, kind=plural)
        try:
            patch = json.loads(request.body.decode() or "{}")
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"error decoding JSON: {exc}")
        if not isinstance(patch, dict):
            return _error(400, "the merge patch must be an object")
        meta = patch.get("metadata") or {}
        if meta.get("name", name) != name or meta.get("namespace", namespace) != namespace:
            return _error(400, "the name or namespace of the object does not match the URL")
        patch.pop("status", None)  # status is a subresource: the main resource ignores it
        updated = merge_patch(copy.deepcopy(current), patch)
        updated_meta = updated.setdefault("metadata", {})
        for field in _SERVER_FIELDS:
            if field in current["metadata"]:
                updated_meta[field] = current["metadata"][field]
        if "status" in current:
            updated["status"] = copy.deepcopy(current["status"])
        stored = self.store.put(plural, updated)
        self.reconcile()
        self.store.save()
        return Response(200, self.store.get(plural, object_key(namespace, name)) or stored)
