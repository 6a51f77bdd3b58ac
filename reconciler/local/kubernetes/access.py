"""Who may do what in the emulated cluster, the CRDs it has, and the namespaces it starts with.

Owns `AccessPolicy`: the verbs on resources the emulated identity is refused (403, as
RBAC answers: kubernetes.io/docs/reference/access-authn-authz/rbac/), the answers to
`SelfSubjectAccessReview` (POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews:
kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access), the
CustomResourceDefinitions installed (GET /apis/apiextensions.k8s.io/v1/
customresourcedefinitions/{name}; by default Flux's and Argo CD's, whose parts the
emulator plays), and the namespaces a cluster has before democtl (kube-system, the
ingress controller's...), which are answered by the API but are not part of the
persisted world. By default everything is granted. May import the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.local.kubernetes.store import uid

USER = "system:serviceaccount:democtl:democtl"
REVIEW_API = "authorization.k8s.io/v1"
CRD_API = "apiextensions.k8s.io/v1"
# plural.group -> (kind, version): the kinds democtl's Flux and Argo CD wiring use
KNOWN_CRDS: dict[str, tuple[str, str]] = {
    "helmreleases.helm.toolkit.fluxcd.io": ("HelmRelease", "v2"),
    "helmrepositories.source.toolkit.fluxcd.io": ("HelmRepository", "v1"),
    "ocirepositories.source.toolkit.fluxcd.io": ("OCIRepository", "v1"),
    "gitrepositories.source.toolkit.fluxcd.io": ("GitRepository", "v1"),
    "kustomizations.kustomize.toolkit.fluxcd.io": ("Kustomization", "v1"),
    "applications.argoproj.io": ("Application", "v1alpha1"),
    "applicationsets.argoproj.io": ("ApplicationSet", "v1alpha1"),
    "appprojects.argoproj.io": ("AppProject", "v1alpha1"),
}
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def crd_object(name: str) -> dict[str, Any]:
    """A CustomResourceDefinition as the API server returns it (the fields clients read)."""
    plural, _, group = name.partition(".")
    kind, version = KNOWN_CRDS.get(name, (plural.capitalize().rstrip("s"), "v1"))
    return {
        "apiVersion": CRD_API,
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "uid": uid(f"crd/{name}"), "resourceVersion": "1"},
        "spec": {
            "group": group,
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
            },
            "scope": "Namespaced",
            "versions": [{"name": version, "served": True, "storage": True}],
        },
        "status": {
            "acceptedNames": {"plural": plural, "kind": kind},
            "storedVersions": [version],
            "conditions": [{"type": "Established", "status": "True"}],
        },
    }


@dataclass
class AccessPolicy:
    """The emulated identity's refusals, the CRDs, and the namespaces the cluster starts with."""

    denied: set[tuple[str, str, str]] = field(default_factory=set)  # (group, resource, verb)
    crds: set[str] = field(default_factory=lambda: set(KNOWN_CRDS))
    # none by default: a bare emulator's namespaces are exactly the world's
    namespaces: tuple[str, ...] = ()

    @classmethod
    def with_namespaces(cls, extra: Iterable[str]) -> AccessPolicy:
        """A prepared cluster: kube-system and the like, plus `extra` (the ingress's...)."""
        return cls(namespaces=tuple(sorted({*SYSTEM_NAMESPACES, *extra})))

    def allowed(self, group: str, resource: str, verb: str) -> bool:
        return (group, resource, verb) not in self.denied

    def forbidden_message(
        self, group: str, resource: str, verb: str, namespace: str | None, name: str | None
    ) -> str:
        # the apiserver's wording (k8s.io/apiserver/pkg/endpoints/handlers/responsewriters)
        what = f'{resource} "{name}"' if name else resource
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        return (
            f'{what} is forbidden: User "{USER}" cannot {verb} resource "{resource}" '
            f'in API group "{group}" {scope}'
        )

    def review(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """The answer to a SelfSubjectAccessReview: 201 with status.allowed, or 400."""
        spec = body.get("spec") if isinstance(body, Mapping) else None
        attributes = spec.get("resourceAttributes") if isinstance(spec, Mapping) else None
        if body.get("kind") not in {None, "SelfSubjectAccessReview"} or not isinstance(
            attributes, Mapping
        ):
            return 400, {"message": "spec.resourceAttributes or nonResourceAttributes is required"}
        group = str(attributes.get("group") or "")
        resource = str(attributes.get("resource") or "")
        verb = str(attributes.get("verb") or "")
        allowed = self.allowed(group, resource, verb)
        status: dict[str, Any] = {"allowed": allowed}
        if allowed:
            status["reason"] = 'RBAC: allowed by ClusterRoleBinding "democtl"'
        return 201, {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": REVIEW_API,
            "metadata": {"creationTimestamp": None},
            "spec": dict(spec) if isinstance(spec, Mapping) else {},
            "status": status,
        }

    def namespace(self, name: str) -> dict[str, Any] | None:
        """A namespace the cluster has before democtl, as the API returns it."""
        if name not in self.namespaces:
            return None
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": uid(f"namespace/{name}"),
                "resourceVersion": "1",
                # set by the API server on every namespace since Kubernetes 1.21
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
