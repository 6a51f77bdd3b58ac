"""What democtl may do in a cluster: the permissions it needs and the preflight that asks.

Owns `required_permissions` (every verb on every resource that `providers/kubernetes.py`
calls, per GitOps flavour, plus the reads `democtl doctor` itself makes), the CRDs each
flavour's rendered manifests need, and `ClusterAccess`, the `ClusterPreflight` adapter:
`/version`, one SelfSubjectAccessReview per permission, CRD and namespace reads. It
changes nothing in the cluster. Kept apart from `kubernetes.py` (the reconciler's calls)
because it is a separate noun: access, not demos. `examples/kubernetes/democtl-rbac.yaml`
grants exactly `required_permissions` (a test keeps them equal).

May import the kubernetes client, `providers.base` and `providers.kubernetes` (its
client and its error conversion).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from reconciler.providers.base import ClusterPreflight, Permission, ProviderError
from reconciler.providers.kubernetes import (
    _TRANSPORT_ERRORS,
    ARGO_GROUP,
    ARGO_PLURAL,
    FLUX_GROUP,
    FLUX_PLURAL,
    PROVIDER,
    GitOps,
    KubernetesCluster,
    _read,
    convert_error,
)

T = TypeVar("T")

CRD_GROUP = "apiextensions.k8s.io"

# What KubernetesCluster calls, verb by verb (list_* cluster-wide, so a ClusterRole):
# list_namespaces / list_all_namespaces, the pod, quota and Secret listings, node_allocatable,
# apply_secret (server-side apply: authorised as `patch`, and as `create` when the Secret
# does not exist yet: kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply),
# delete_secret (a `get` first, then `delete`).
_COMMON = (
    Permission("", "namespaces", "list"),
    Permission("", "pods", "list"),
    Permission("", "resourcequotas", "list"),
    Permission("", "nodes", "list"),
    Permission("", "secrets", "list"),
    Permission("", "secrets", "get"),
    Permission("", "secrets", "create"),
    Permission("", "secrets", "patch"),
    Permission("", "secrets", "delete"),
    # democtl doctor's own reads: the ingress namespace and the GitOps CRDs
    Permission("", "namespaces", "get"),
    Permission(CRD_GROUP, "customresourcedefinitions", "get"),
)
# observe lists the releases; reset_release patches one that ran out of retries
_FLAVOUR = {
    flavour: (Permission(group, plural, "list"), Permission(group, plural, "patch"))
    for flavour, group, plural in (
        ("flux", FLUX_GROUP, FLUX_PLURAL),
        ("argo", ARGO_GROUP, ARGO_PLURAL),
    )
}

# The kinds each flavour's rendered/ and clusters/ wiring use, by CRD name (plural.group).
REQUIRED_CRDS: dict[str, tuple[str, ...]] = {
    "flux": (
        "helmreleases.helm.toolkit.fluxcd.io",
        "helmrepositories.source.toolkit.fluxcd.io",
        "ocirepositories.source.toolkit.fluxcd.io",
        "gitrepositories.source.toolkit.fluxcd.io",
        "kustomizations.kustomize.toolkit.fluxcd.io",
    ),
    "argo": ("applications.argoproj.io", "applicationsets.argoproj.io"),
}


def required_permissions(gitops: GitOps) -> list[Permission]:
    """Every permission democtl needs with this GitOps flavour, sorted."""
    return sorted({*_COMMON, *_FLAVOUR[gitops]})


class ClusterAccess:
    """`ClusterPreflight` over a `KubernetesCluster`'s API client; reads and reviews only."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self._api = cluster.api_client
        self._timeout = cluster.timeout
        self._core = client.CoreV1Api(self._api)

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except _TRANSPORT_ERRORS as exc:
            raise convert_error(exc, operation) from None

    def _exists(self, operation: str, call: Callable[[], Any]) -> bool:
        """Whether a GET finds the object (404: no); the raw reply is read to its end, so
        its connection goes back to the pool clean."""
        try:
            _read(call())
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise convert_error(exc, operation) from None
        except _TRANSPORT_ERRORS as exc:
            raise convert_error(exc, operation) from None
        return True

    def server_version(self) -> str:
        reply = self._call(
            "get version",
            lambda: client.VersionApi(self._api).get_code(
                _request_timeout=self._timeout, _preload_content=False
            ),
        )
        try:
            info = json.loads(_read(reply))
        except ValueError:
            raise ProviderError(PROVIDER, "get version", "/version is not JSON") from None
        return str(info.get("gitVersion", "unknown")) if isinstance(info, dict) else "unknown"

    def can_i(self, permission: Permission) -> bool:
        # https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    group=permission.group,
                    resource=permission.resource,
                    verb=permission.verb,
                    namespace=permission.namespace,
                )
            )
        )
        answer = self._call(
            "review access",
            lambda: client.AuthorizationV1Api(self._api).create_self_subject_access_review(
                review, _request_timeout=self._timeout
            ),
        )
        return bool(answer.status and answer.status.allowed)

    def crd_installed(self, name: str) -> bool:
        # raw reply: whether it exists is the question, not the CRD's full shape
        return self._exists(
            "get customresourcedefinition",
            lambda: client.ApiextensionsV1Api(self._api).read_custom_resource_definition(
                name, _request_timeout=self._timeout, _preload_content=False
            ),
        )

    def namespace_exists(self, name: str) -> bool:
        return self._exists(
            "get namespace",
            lambda: self._core.read_namespace(
                name, _request_timeout=self._timeout, _preload_content=False
            ),
        )


def _conforms(access: ClusterAccess) -> ClusterPreflight:
    return access  # mypy checks here that the adapter implements the Protocol
