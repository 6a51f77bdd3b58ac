"""The permissions democtl needs in a cluster: derived from its calls, granted by the RBAC file.

- every request the Kubernetes adapter (and doctor's own preflight) sends to the emulator,
  as verb and resource, is exactly `required_permissions` for each GitOps flavour;
- `examples/kubernetes/democtl-rbac.yaml` is valid RBAC that grants exactly that list;
- the emulator refuses a denied verb as RBAC does (403, the apiserver's wording), and a
  SelfSubjectAccessReview answers for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.local.kubernetes.access import AccessPolicy
from reconciler.local.kubernetes.store import RESOURCES
from reconciler.marks import labels
from reconciler.providers.base import Permission, ProviderError
from reconciler.providers.kubernetes import KubernetesCluster
from reconciler.providers.kubernetes_access import (
    REQUIRED_CRDS,
    ClusterAccess,
    required_permissions,
)
from tests.gitrepo import PROJECT

RBAC_FILE = PROJECT / "examples" / "kubernetes" / "democtl-rbac.yaml"
VERBS = {"LIST": "list", "GET": "get", "PATCH": "patch", "DELETE": "delete", "POST": "create"}
# the verbs RBAC knows: kubernetes.io/docs/reference/access-authn-authz/authorization/
# (Determine the request verb)
RBAC_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
GROUPS = {plural: api.rpartition("/")[0] for plural, (api, _, _) in RESOURCES.items()}
GROUPS["customresourcedefinitions"] = "apiextensions.k8s.io"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[KubernetesEmulator]:
    with KubernetesEmulator(tmp_path / "state", source=None) as emu:
        emu.add_namespace("demo-acme01", labels("default", "demo-acme01"))
        yield emu


def _exercise(emulator: KubernetesEmulator, gitops: str) -> set[Permission]:
    """Every call democtl makes to a cluster, once; the permissions the requests needed."""
    server = emulator.api_server
    assert server is not None
    server.requests.clear()
    cluster = KubernetesCluster.for_url(emulator.url, gitops=gitops)  # type: ignore[arg-type]
    try:
        cluster.list_namespaces()
        cluster.list_all_namespaces()
        cluster.node_allocatable()
        cluster.apply_secret("demo-acme01", "supabase-credentials", {"k": "v"})
        cluster.delete_secret("demo-acme01", "supabase-credentials")
        with pytest.raises(ProviderError):  # the emulator keeps no release to patch here
            cluster.reset_release("demo-acme01", "demo-acme01", "token-1")
        access = ClusterAccess(cluster)
        access.server_version()
        access.can_i(Permission("", "pods", "list"))
        access.namespace_exists("ingress-nginx")
        for name in REQUIRED_CRDS[gitops]:
            assert access.crd_installed(name)
    finally:
        cluster.close()
    needed = set()
    for route in list(server.requests):
        method, _, target = route.partition(" ")
        if target.rstrip("/") in {"/version", "selfsubjectaccessreviews"}:
            continue  # granted to every authenticated user (system:basic-user, public-info)
        needed.add(Permission(GROUPS[target], target, VERBS[method]))
    if Permission("", "secrets", "patch") in needed:
        # server-side apply of a Secret that does not exist yet is authorised as create
        needed.add(Permission("", "secrets", "create"))
    return needed


@pytest.mark.parametrize("gitops", ["flux", "argo"])
def test_required_permissions_are_exactly_what_democtl_calls(
    emulator: KubernetesEmulator, gitops: str
) -> None:
    assert _exercise(emulator, gitops) == set(required_permissions(gitops))  # type: ignore[arg-type]


def _rbac() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RBAC_FILE.read_text()) if doc]


def test_the_rbac_file_is_valid_rbac() -> None:
    api = client.ApiClient()
    models = {
        "ClusterRole": "V1ClusterRole",
        "ClusterRoleBinding": "V1ClusterRoleBinding",
        "ServiceAccount": "V1ServiceAccount",
        "Namespace": "V1Namespace",
    }
    docs = _rbac()
    roles = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"}
    accounts = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    for doc in docs:
        # the client's models check required fields and types, as the API server would
        model = api.deserialize(json.dumps(doc), models[doc["kind"]], "application/json")
        assert model.kind == doc["kind"]
        if doc["kind"] == "ClusterRole":
            assert doc["apiVersion"] == "rbac.authorization.k8s.io/v1"
            for rule in model.rules:
                assert set(rule.verbs) <= RBAC_VERBS, rule.verbs
                assert rule.api_groups is not None and rule.resources
        if doc["kind"] == "ClusterRoleBinding":
            assert model.role_ref.name in roles
            for subject in model.subjects:
                assert (subject.namespace, subject.name) in accounts


def _granted(role_names: set[str]) -> set[Permission]:
    return {
        Permission(group, resource, verb)
        for doc in _rbac()
        if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] in role_names
        for rule in doc["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("gitops", ["flux", "argo"])
def test_the_rbac_file_grants_exactly_what_doctor_checks(gitops: str) -> None:
    granted = _granted({"democtl", f"democtl-{gitops}"})
    assert granted == set(required_permissions(gitops))  # type: ignore[arg-type]


def test_a_denied_verb_is_refused_as_rbac_does_and_reviewed_as_denied(tmp_path: Path) -> None:
    access = AccessPolicy(denied={("", "pods", "list")}, namespaces=("kube-system",))
    with KubernetesEmulator(tmp_path / "state", source=None, access=access) as emu:
        emu.add_namespace("demo-acme01", labels("default", "demo-acme01"))
        cluster = KubernetesCluster.for_url(emu.url)
        try:
            with pytest.raises(ProviderError) as refused:
                cluster.list_namespaces()
            assert refused.value.status_code == 403
            assert 'cannot list resource "pods" in API group "" at the cluster scope' in str(
                refused.value
            )
            review = ClusterAccess(cluster)
            assert not review.can_i(Permission("", "pods", "list"))
            assert review.can_i(Permission("", "pods", "list", namespace="x")) is False
            assert review.can_i(Permission("", "secrets", "list"))
            assert review.namespace_exists("kube-system")
            assert not review.namespace_exists("traefik")
            assert not review.crd_installed("widgets.example.com")
        finally:
            cluster.close()


def test_system_namespaces_are_listed_and_selected_like_any_other(tmp_path: Path) -> None:
    access = AccessPolicy.with_namespaces(["ingress-nginx"])
    with KubernetesEmulator(tmp_path / "state", source=None, access=access) as emu:
        cluster = KubernetesCluster.for_url(emu.url, page_size=2)  # pages across both kinds
        emu.add_namespace("demo-acme01", labels("default", "demo-acme01"))
        try:
            names = [n.name for n in cluster.list_all_namespaces()]
            assert names == sorted(
                ["default", "demo-acme01", "ingress-nginx", "kube-node-lease", "kube-public",
                 "kube-system"]
            )  # fmt: skip
            assert [n.name for n in cluster.list_namespaces()] == ["demo-acme01"]
        finally:
            cluster.close()
        # they are the API's, not the persisted world's
        assert [n["name"] for n in emu.inspect()["namespaces"]] == ["demo-acme01"]
