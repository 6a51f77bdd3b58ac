"""The Kubernetes adapter, driven through the real `kubernetes` client, against the emulator.

Each test writes a small `rendered/<id>/` tree the way democtl renders it, lets the
emulator's Flux (or Argo CD) stand-in sync it, and observes through the adapter.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from textwrap import dedent

import httpx
import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client

from reconciler.cli import cli
from reconciler.local import local_state_dir
from reconciler.local.kubernetes import KubernetesEmulator, selector_matches
from reconciler.local.server import Faults
from reconciler.local.stack import LocalStack
from reconciler.marks import Owner
from reconciler.providers.base import (
    SECRET_MIGRATIONS_ANNOTATION,
    SECRET_PROJECT_REF_ANNOTATION,
    SECRET_SEED_ANNOTATION,
    NamespaceState,
    ProviderError,
    RateLimited,
)
from reconciler.providers.kubernetes import KubernetesCluster
from reconciler.providers.probe import HttpxProber
from reconciler.workspace import read_settings
from tests.conftest import PROJECT

DOMAIN = "splits.network"
SECRET = "supabase-credentials"
CREDENTIALS = {
    "SUPABASE_URL": "https://abcdefghijklmnopqrst.supabase.co",
    "SUPABASE_ANON_KEY": "anon-key-public-3f9a",
    "SUPABASE_SERVICE_ROLE_KEY": "service-role-key-s3cr3t-7d1c",
    "SUPABASE_DB_PASSWORD": "db-password-s3cr3t-91be",
}
SECRET_VALUES = [CREDENTIALS["SUPABASE_SERVICE_ROLE_KEY"], CREDENTIALS["SUPABASE_DB_PASSWORD"]]
SERVICES = {"portal": 2, "candidate": 1, "api-gateway": 1}


def namespace_yaml(demo_id: str, owner_id: str = "default") -> str:
    return dedent(
        f"""\
        apiVersion: v1
        kind: Namespace
        metadata:
          name: {demo_id}
          labels:
            app.kubernetes.io/managed-by: democtl
            demos.splits.network/id: {demo_id}
            demos.splits.network/owner-id: {owner_id}
            demos.splits.network/type: enterprise
        ---
        apiVersion: v1
        kind: ResourceQuota
        metadata:
          name: demo-quota
          namespace: {demo_id}
          labels:
            app.kubernetes.io/managed-by: democtl
        spec:
          hard:
            requests.cpu: "2"
            requests.memory: 4Gi
            limits.cpu: "4"
            limits.memory: 8Gi
            pods: "20"
        ---
        apiVersion: v1
        kind: LimitRange
        metadata:
          name: demo-defaults
          namespace: {demo_id}
        spec:
          limits:
            - type: Container
              defaultRequest: {{cpu: 100m, memory: 128Mi}}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: default-deny-ingress
          namespace: {demo_id}
        spec:
          podSelector: {{}}
          policyTypes: [Ingress]
        """
    )


def services_yaml(services: dict[str, int], indent: int, demo_id: str = "") -> str:
    """The chart values: services with replicas and resources, and the pods' common labels."""
    pad = " " * indent
    lines = [f"{pad}commonLabels:", f"{pad}  demos.splits.network/id: {demo_id}"] if demo_id else []
    lines += [f"{pad}services:"]
    for name, replicas in services.items():
        lines += [
            f"{pad}  {name}:",
            f"{pad}    replicas: {replicas}",
            f"{pad}    resources:",
            f"{pad}      requests: {{cpu: 250m, memory: 512Mi}}",
            f"{pad}      limits: {{cpu: 500m, memory: 1Gi}}",
        ]
    return "\n".join(lines) + "\n"


def helmrelease_yaml(demo_id: str, services: dict[str, int]) -> str:
    return dedent(
        f"""\
            apiVersion: helm.toolkit.fluxcd.io/v2
            kind: HelmRelease
            metadata:
              name: splits-network
              namespace: {demo_id}
              labels:
                app.kubernetes.io/managed-by: democtl
                demos.splits.network/id: {demo_id}
            spec:
              interval: 5m
              chart:
                spec:
                  chart: splits-network
                  version: 1.4.2
                  sourceRef: {{kind: HelmRepository, name: splits-network, namespace: flux-system}}
              valuesFrom:
                - kind: Secret
                  name: {SECRET}
                  valuesKey: SUPABASE_URL
                  targetPath: supabase.url
              values:
                demo: {{id: {demo_id}, type: enterprise}}
            """
    ) + services_yaml(services, 4, demo_id)


def application_yaml(demo_id: str, services: dict[str, int]) -> str:
    return dedent(
        f"""\
            apiVersion: argoproj.io/v1alpha1
            kind: Application
            metadata:
              name: {demo_id}
              namespace: argocd
              labels:
                app.kubernetes.io/managed-by: democtl
                demos.splits.network/id: {demo_id}
            spec:
              project: demos
              destination: {{server: "https://kubernetes.default.svc", namespace: {demo_id}}}
              syncPolicy: {{automated: {{prune: true, selfHeal: true}}}}
              source:
                repoURL: ghcr.io/splits-network/charts
                chart: splits-network
                targetRevision: 1.4.2
                helm:
                  valuesObject:
                    demo: {{id: {demo_id}, type: enterprise}}
            """
    ) + services_yaml(services, 8, demo_id)


def render(
    repo: Path,
    demo_id: str,
    *,
    gitops: str = "flux",
    services: dict[str, int] = SERVICES,
    owner_id: str = "default",
) -> None:
    folder = repo / "rendered" / demo_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "namespace.yaml").write_text(namespace_yaml(demo_id, owner_id))
    release = helmrelease_yaml if gitops == "flux" else application_yaml
    (folder / "release.yaml").write_text(release(demo_id, services))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "state-repo"
    path.mkdir()
    return path


@pytest.fixture
def emulator(tmp_path: Path, repo: Path) -> Iterator[KubernetesEmulator]:
    nodes = {"node-a": ("7910m", "30Gi"), "node-b": ("8", "32Gi")}
    with KubernetesEmulator(tmp_path / "state", source=repo, nodes=nodes) as emu:
        yield emu


@pytest.fixture
def cluster(emulator: KubernetesEmulator) -> Iterator[KubernetesCluster]:
    adapter = KubernetesCluster.for_url(emulator.url, gitops="flux", secret_name=SECRET)
    yield adapter
    adapter.close()


def by_name(cluster: KubernetesCluster) -> dict[str, object]:
    return {state.name: state for state in cluster.list_namespaces()}


def core(emulator: KubernetesEmulator) -> client.CoreV1Api:
    configuration = client.Configuration(host=emulator.url)
    configuration.proxy = None
    return client.CoreV1Api(client.ApiClient(configuration))


# --- Secret: server-side apply --------------------------------------------------------------


def test_secret_is_server_side_applied_then_updated_and_reapply_is_a_no_op(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    emulator.sync()
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)

    secret = core(emulator).read_namespaced_secret(SECRET, "demo-acme01")
    assert secret.type == "Opaque"
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "democtl"
    assert secret.metadata.labels["demos.splits.network/id"] == "demo-acme01"
    assert secret.metadata.labels["demos.splits.network/owner-id"] == "default"
    # helm-controller upgrades the release at once on a change only with this label
    assert secret.metadata.labels["reconcile.fluxcd.io/watch"] == "Enabled"
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == CREDENTIALS
    first_version = secret.metadata.resource_version

    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    again = core(emulator).read_namespaced_secret(SECRET, "demo-acme01")
    assert again.metadata.resource_version == first_version  # nothing changed

    rotated = {**CREDENTIALS, "SUPABASE_DB_PASSWORD": "rotated-s3cr3t"}
    cluster.apply_secret("demo-acme01", SECRET, rotated)
    updated = core(emulator).read_namespaced_secret(SECRET, "demo-acme01")
    assert int(updated.metadata.resource_version) > int(first_version)
    assert base64.b64decode(updated.data["SUPABASE_DB_PASSWORD"]).decode() == "rotated-s3cr3t"
    assert emulator.api_server is not None
    assert emulator.api_server.requests["PATCH secrets"] == 3


def test_project_ref_annotation_is_applied_and_read_back(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    assert by_name(cluster)["demo-acme01"].secret_project_ref is None
    cluster.apply_secret(
        "demo-acme01", SECRET, CREDENTIALS, {SECRET_PROJECT_REF_ANNOTATION: "abcdefghijklmnopqrst"}
    )
    state = by_name(cluster)["demo-acme01"]
    assert (state.secret_present, state.secret_project_ref) == (True, "abcdefghijklmnopqrst")
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)  # the annotation is no longer applied
    assert by_name(cluster)["demo-acme01"].secret_project_ref is None


def test_the_secret_progress_marks_and_public_values_are_read_back_in_the_same_listing(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    marks = {
        SECRET_PROJECT_REF_ANNOTATION: "abcdefghijklmnopqrst",
        SECRET_MIGRATIONS_ANNOTATION: "sha256:0123456789abcdef",
        SECRET_SEED_ANNOTATION: "sha256:fedcba9876543210",
    }
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS, marks)
    state = by_name(cluster)["demo-acme01"]
    assert isinstance(state, NamespaceState)
    assert (state.secret_migrations, state.secret_seed) == (
        "sha256:0123456789abcdef",
        "sha256:fedcba9876543210",
    )
    assert (state.secret_url, state.secret_anon_key) == (
        CREDENTIALS["SUPABASE_URL"],
        CREDENTIALS["SUPABASE_ANON_KEY"],
    )
    # the two other values are never read into the observation
    assert not set(SECRET_VALUES) & {str(v) for v in asdict(state).values()}


def test_apply_secret_before_the_namespace_exists_is_a_clear_404(
    cluster: KubernetesCluster,
) -> None:
    with pytest.raises(ProviderError) as caught:
        cluster.apply_secret("demo-later", SECRET, CREDENTIALS)
    assert caught.value.status_code == 404
    assert not caught.value.retryable
    assert caught.value.demo_id == "demo-later"
    assert 'namespaces "demo-later" not found' in str(caught.value)


def test_delete_secret_twice_is_success(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    cluster.delete_secret("demo-acme01", SECRET)
    cluster.delete_secret("demo-acme01", SECRET)
    assert emulator.inspect()["secrets"] == []


def test_delete_secret_refuses_a_secret_without_our_mark(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    emulator.sync()
    # someone's hand-made Secret of the same name, without democtl's labels
    response = httpx.patch(
        f"{emulator.url}/api/v1/namespaces/demo-acme01/secrets/{SECRET}?fieldManager=kubectl",
        content=yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": SECRET, "labels": {"team": "sales"}},
                "stringData": {"token": "not-ours"},
            }
        ),
        headers={"Content-Type": "application/apply-patch+yaml"},
        trust_env=False,
    )
    assert response.status_code == 201
    with pytest.raises(ProviderError, match="not marked as democtl's") as caught:
        cluster.delete_secret("demo-acme01", SECRET)
    assert caught.value.demo_id == "demo-acme01"
    assert [s["name"] for s in emulator.inspect()["secrets"]] == [SECRET]
    assert "DELETE secrets" not in emulator.api_server.requests


def test_apply_without_server_side_apply_content_type_is_refused(
    repo: Path, emulator: KubernetesEmulator
) -> None:
    render(repo, "demo-acme01")
    emulator.sync()
    response = httpx.patch(
        f"{emulator.url}/api/v1/namespaces/demo-acme01/secrets/{SECRET}?fieldManager=x",
        json={"data": {}},
        headers={"Content-Type": "application/merge-patch+json"},
        trust_env=False,
    )
    assert response.status_code == 415
    assert response.json()["kind"] == "Status"
    assert response.json()["reason"] == "UnsupportedMediaType"


# --- namespaces and health ------------------------------------------------------------------


def test_pods_become_ready_only_once_the_secret_exists(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    waiting = by_name(cluster)["demo-acme01"]
    assert waiting.demo_id == "demo-acme01"
    assert waiting.phase == "Active"
    assert (waiting.pods_ready, waiting.pods_expected) == (0, 4)
    assert not waiting.secret_present
    assert not waiting.release_ready
    assert "supabase-credentials" in waiting.release_message
    assert not waiting.healthy

    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    ready = by_name(cluster)["demo-acme01"]
    assert (ready.pods_ready, ready.pods_expected) == (4, 4)
    assert ready.secret_present
    assert ready.release_ready
    assert ready.release_message.startswith("InstallSucceeded")
    assert ready.healthy


def test_quota_usage_and_restarts_are_reported(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    emulator.record_restarts("demo-acme01", "portal", 3)
    state = by_name(cluster)["demo-acme01"]
    # four pods requesting 250m / 512Mi each
    assert (state.cpu_used, state.memory_used) == ("1", "2Gi")
    assert (state.cpu_hard, state.memory_hard) == ("2", "4Gi")
    assert (state.pods_used, state.pods_quota) == (4, 20)
    assert state.restarts == 6  # two portal replicas, three restarts each


def test_scaling_a_service_changes_expected_and_ready_pods(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    render(repo, "demo-acme01", services={"portal": 3, "candidate": 1})
    state = by_name(cluster)["demo-acme01"]
    assert (state.pods_ready, state.pods_expected, state.pods_used) == (4, 4, 4)


def test_listing_costs_pages_not_demos(repo: Path, emulator: KubernetesEmulator) -> None:
    for index in range(5):
        render(repo, f"demo-n{index}")
    adapter = KubernetesCluster.for_url(emulator.url, secret_name=SECRET, page_size=2)
    states = adapter.list_namespaces()
    assert [s.name for s in states] == [f"demo-n{i}" for i in range(5)]
    assert all(s.pods_expected == 4 for s in states)
    assert emulator.api_server is not None
    counts = emulator.api_server.requests
    # 5 namespaces, 20 pods, 5 quotas, 0 secrets, 5 releases at 2 per page
    assert counts["LIST namespaces"] == 3
    assert counts["LIST pods"] == 10
    assert counts["LIST resourcequotas"] == 3
    assert counts["LIST secrets"] == 1
    assert counts["LIST helmreleases"] == 3
    assert sum(v for k, v in counts.items() if not k.startswith("LIST")) == 0
    adapter.close()


def test_foreign_namespaces_are_not_listed_and_hand_made_ones_are_never_pruned(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    mark = {"app.kubernetes.io/managed-by": "democtl"}
    emulator.add_namespace("production", {"team": "platform"})
    emulator.add_namespace("demo-manual", mark)  # no demo id: no demo's
    staged = {**mark, "demos.splits.network/id": "demo-staged"}
    emulator.add_namespace("demo-staged", {**staged, "demos.splits.network/owner-id": "staging"})
    emulator.add_namespace("demo-old", {**mark, "demos.splits.network/id": "demo-old"})
    render(repo, "demo-acme01")
    assert sorted(by_name(cluster)) == ["demo-acme01"]
    adopting = KubernetesCluster.for_url(
        emulator.url, secret_name=SECRET, owner=Owner("default", adopt_unowned=True)
    )
    assert sorted(by_name(adopting)) == ["demo-acme01", "demo-old"]  # the old mark, adopted
    adopting.close()
    shutil.rmtree(repo / "rendered" / "demo-acme01")
    assert sorted(by_name(cluster)) == []
    assert {n["name"] for n in emulator.inspect()["namespaces"]} == {
        "production",
        "demo-manual",
        "demo-staged",
        "demo-old",
    }


def test_a_secret_of_another_owner_id_is_neither_seen_nor_deleted(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01", owner_id="staging")
    staging = KubernetesCluster.for_url(emulator.url, secret_name=SECRET, owner=Owner("staging"))
    staging.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    assert [n.secret_present for n in staging.list_namespaces()] == [True]
    assert cluster.list_namespaces() == []  # the default owner sees no namespace of staging's
    with pytest.raises(ProviderError, match="not marked as democtl's for demo-acme01 with owner"):
        cluster.delete_secret("demo-acme01", SECRET)
    assert len(emulator.inspect()["secrets"]) == 1
    staging.delete_secret("demo-acme01", SECRET)
    assert emulator.inspect()["secrets"] == []
    staging.close()


def test_namespace_and_everything_in_it_is_pruned_when_rendered_dir_disappears(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    render(repo, "demo-beta02")
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    assert sorted(by_name(cluster)) == ["demo-acme01", "demo-beta02"]

    shutil.rmtree(repo / "rendered" / "demo-acme01")
    assert sorted(by_name(cluster)) == ["demo-beta02"]
    world = emulator.inspect()
    assert {p["namespace"] for p in world["pods"]} == {"demo-beta02"}
    assert world["secrets"] == []
    assert {r["namespace"] for r in world["releases"]} == {"demo-beta02"}


def test_argo_application_health_follows_its_pods(repo: Path, emulator: KubernetesEmulator) -> None:
    render(repo, "demo-argo01", gitops="argo", services={"portal": 1, "api-gateway": 1})
    argo = KubernetesCluster.for_url(emulator.url, gitops="argo", secret_name=SECRET)
    waiting = {s.name: s for s in argo.list_namespaces()}["demo-argo01"]
    assert (waiting.pods_ready, waiting.pods_expected) == (0, 2)
    assert not waiting.release_ready
    assert waiting.release_message.startswith("health Progressing, sync Synced")

    argo.apply_secret("demo-argo01", SECRET, CREDENTIALS)
    ready = {s.name: s for s in argo.list_namespaces()}["demo-argo01"]
    assert ready.release_ready
    assert ready.release_message == "health Healthy, sync Synced"
    assert ready.healthy
    assert emulator.api_server is not None
    assert emulator.api_server.requests["LIST helmreleases"] == 0
    argo.close()


def test_node_allocatable_sums_the_nodes(cluster: KubernetesCluster) -> None:
    assert cluster.node_allocatable() == ("15910m", "62Gi")


def test_state_persists_between_emulator_runs(tmp_path: Path, repo: Path) -> None:
    render(repo, "demo-acme01")
    with KubernetesEmulator(tmp_path / "world", source=repo) as first:
        adapter = KubernetesCluster.for_url(first.url, secret_name=SECRET)
        adapter.apply_secret("demo-acme01", SECRET, CREDENTIALS)
        adapter.close()
        version = first.inspect()["secrets"][0]["resourceVersion"]
    with KubernetesEmulator(tmp_path / "world", source=repo) as second:
        adapter = KubernetesCluster.for_url(second.url, secret_name=SECRET)
        assert by_name(adapter)["demo-acme01"].healthy
        # only digests of the values were kept, enough to see that nothing changes
        adapter.apply_secret("demo-acme01", SECRET, CREDENTIALS)
        assert second.inspect()["secrets"][0]["resourceVersion"] == version
        adapter.apply_secret("demo-acme01", SECRET, {**CREDENTIALS, "SUPABASE_URL": "https://x"})
        assert second.inspect()["secrets"][0]["resourceVersion"] != version
        adapter.close()


@pytest.mark.parametrize(
    "selector, labels, expected",
    [
        pytest.param("a=1", {"a": "1"}, True, id="equals"),
        pytest.param("a==1,b!=2", {"a": "1", "b": "3"}, True, id="double-equals-and-not"),
        pytest.param("a!=1", {}, True, id="not-equals-absent"),
        pytest.param("a in (x, y)", {"a": "y"}, True, id="in"),
        pytest.param("a notin (x,y),b", {"a": "z", "b": ""}, True, id="notin-and-exists"),
        pytest.param("!a", {"a": "1"}, False, id="does-not-exist"),
        pytest.param("a", {}, False, id="exists-missing"),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


# --- faults ----------------------------------------------------------------------------------


def test_rate_limit_surfaces_as_retryable_rate_limited_with_retry_after(
    tmp_path: Path, repo: Path
) -> None:
    with KubernetesEmulator(
        tmp_path / "s", source=repo, faults=Faults(rate_limit=1.0, retry_after=7)
    ) as emu:
        adapter = KubernetesCluster.for_url(emu.url, secret_name=SECRET)
        with pytest.raises(RateLimited) as caught:
            adapter.list_namespaces()
        assert caught.value.retryable
        assert caught.value.retry_after == 7
        assert caught.value.status_code == 429
        assert emu.api_server is not None
        assert emu.api_server.requests["LIST namespaces"] == 1  # single shot, no hidden retry
        adapter.close()


def test_an_apply_answered_503_is_tried_again_being_idempotent(tmp_path: Path, repo: Path) -> None:
    render(repo, "demo-acme01")
    with KubernetesEmulator(tmp_path / "s", source=repo) as emu:
        adapter = KubernetesCluster.for_url(emu.url, secret_name=SECRET)
        adapter.list_namespaces()
        assert emu.api_server is not None
        emu.api_server.set_faults(Faults(server_error=1.0))
        with pytest.raises(ProviderError) as caught:
            adapter.apply_secret("demo-acme01", SECRET, CREDENTIALS)
        assert caught.value.retryable and caught.value.status_code == 503
        assert emu.api_server.requests["PATCH secrets"] == 4  # once and three retries
        adapter.close()


def test_a_read_answered_429_with_a_short_retry_after_is_tried_again_after_it(
    tmp_path: Path, repo: Path
) -> None:
    """As client-go does: a short Retry-After is waited out (single-shot, one such 429 among
    the observing list calls blinded the cycle); so is an (idempotent) apply."""
    render(repo, "demo-acme01")
    with KubernetesEmulator(
        tmp_path / "s", source=repo, faults=Faults(rate_limit=1.0, retry_after=0)
    ) as emu:
        adapter = KubernetesCluster.for_url(emu.url, secret_name=SECRET)
        with pytest.raises(RateLimited) as caught:
            adapter.list_namespaces()
        assert caught.value.retry_after == 0
        assert emu.api_server is not None
        assert emu.api_server.requests["LIST namespaces"] == 4  # once and three retries
        with pytest.raises(RateLimited):
            adapter.apply_secret("demo-acme01", SECRET, CREDENTIALS)
        assert emu.api_server.requests["PATCH secrets"] == 4
        adapter.close()


@pytest.mark.parametrize(
    "faults, status",
    [
        pytest.param(Faults(server_error=1.0), 503, id="server-error"),
        pytest.param(Faults(drop=1.0), None, id="dropped-connection"),
    ],
)
def test_server_errors_and_dropped_connections_are_retryable(
    tmp_path: Path, repo: Path, faults: Faults, status: int | None
) -> None:
    with KubernetesEmulator(tmp_path / "s", source=repo, faults=faults) as emu:
        adapter = KubernetesCluster.for_url(emu.url, secret_name=SECRET)
        with pytest.raises(ProviderError) as caught:
            adapter.node_allocatable()
        assert caught.value.retryable
        assert caught.value.status_code == status
        adapter.close()


def test_secret_values_never_reach_logs_errors_or_inspect(
    tmp_path: Path, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    render(repo, "demo-acme01")
    with KubernetesEmulator(tmp_path / "s", source=repo) as emu:
        adapter = KubernetesCluster.for_url(emu.url, secret_name=SECRET)
        adapter.apply_secret("demo-acme01", SECRET, CREDENTIALS)
        adapter.list_namespaces()
        emu.api_server.set_faults(Faults(server_error=1.0))  # type: ignore[union-attr]
        with pytest.raises(ProviderError) as caught:
            adapter.apply_secret("demo-acme01", SECRET, CREDENTIALS)
        inspected = json.dumps(emu.inspect())
        adapter.close()
    files = "".join(p.read_text() for p in (tmp_path / "s").rglob("*") if p.is_file())
    encoded = [base64.b64encode(v.encode()).decode() for v in SECRET_VALUES]
    for needle in SECRET_VALUES + encoded:
        assert needle not in caplog.text
        assert needle not in str(caught.value)
        assert needle not in inspected
        assert needle not in files  # the emulator's state keeps digests only
    assert "applied secret demo-acme01/supabase-credentials" in caplog.text
    assert '"SUPABASE_DB_PASSWORD": "REDACTED"' in inspected


# --- health endpoints and the prober ---------------------------------------------------------


def test_prober_sees_200_when_ready_503_when_not_and_false_for_unknown_hosts(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    prober = HttpxProber(resolve={f"*.{DOMAIN}": emulator.health_url}, timeout=2)
    portal = f"https://demo-acme01-portal.{DOMAIN}/health"
    assert prober.probe(portal) is False
    direct = httpx.get(
        f"{emulator.health_url}/health",
        headers={"Host": f"demo-acme01-api.{DOMAIN}"},
        trust_env=False,
    )
    assert direct.status_code == 503

    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    assert prober.probe(portal) is True
    assert prober.probe(f"demo-acme01-candidate.{DOMAIN}") is True
    assert prober.probe(f"https://demo-acme01-api.{DOMAIN}") is True
    assert prober.probe(f"https://demo-nobody-portal.{DOMAIN}/health") is False
    unknown = httpx.get(
        f"{emulator.health_url}/health", headers={"Host": "example.org"}, trust_env=False
    )
    assert unknown.status_code == 404
    prober.close()


def test_prober_answers_false_when_nothing_listens() -> None:
    with HttpxProber(resolve={"demo-x-portal.example.com": "http://127.0.0.1:9"}) as prober:
        assert prober.probe("https://demo-x-portal.example.com/health") is False


# --- the local stack, its kubeconfig and the CLI ---------------------------------------------


def test_local_stack_writes_a_kubeconfig_the_client_can_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(PROJECT / "reconciler.yaml", repo / "reconciler.yaml")
    settings = read_settings(repo).settings
    assert settings is not None
    render(repo, "demo-acme01")
    with LocalStack(local_state_dir(repo), repo, settings) as stack:
        monkeypatch.setenv("KUBECONFIG", str(stack.kubeconfig))
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # must not capture loopback
        adapter = KubernetesCluster.from_environment(secret_name=settings.kubernetes.secretName)
        adapter.apply_secret("demo-acme01", settings.kubernetes.secretName, CREDENTIALS)
        assert by_name(adapter)["demo-acme01"].healthy
        adapter.close()
        with stack.prober() as prober:
            assert prober.probe(f"https://{settings.url_for('portal', 'demo-acme01')}/health")

    result = CliRunner().invoke(cli, ["local", "inspect", "--format", "json", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    world = json.loads(result.output)
    assert [n["name"] for n in world["kubernetes"]["namespaces"]] == ["demo-acme01"]
    assert len(world["kubernetes"]["pods"]) == 4
    assert set(world["kubernetes"]["secrets"][0]["data"].values()) == {"REDACTED"}
    for needle in SECRET_VALUES:
        assert needle not in result.output


# --- contract: the emulator answers what the real API server would --------------------------


def test_emulator_objects_validate_against_the_kubernetes_schemas(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    import kubernetes_validate

    render(repo, "demo-acme01")
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    version = kubernetes_validate.latest_version()
    for path in (
        "/api/v1/namespaces",
        "/api/v1/pods",
        "/api/v1/secrets",
        "/api/v1/resourcequotas",
        "/api/v1/nodes",
        f"/api/v1/namespaces/demo-acme01/secrets/{SECRET}",
    ):
        body = httpx.get(emulator.url + path, trust_env=False).json()
        kubernetes_validate.validate(body, version, strict=True)
    # and the real client's typed models read them back
    api = core(emulator)
    assert [n.metadata.name for n in api.list_namespace().items] == ["demo-acme01"]
    pods = api.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/name=portal").items
    assert len(pods) == 2
    assert all(p.status.container_statuses[0].ready for p in pods)
    quota = api.list_namespaced_resource_quota("demo-acme01").items[0]
    assert quota.status.used["requests.cpu"] == "1"
    missing = httpx.get(
        f"{emulator.url}/api/v1/namespaces/demo-acme01/secrets/nope", trust_env=False
    )
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'secrets "nope" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"name": "nope", "kind": "secrets"},
    }


def test_apply_by_another_manager_conflicts_unless_forced(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    url = f"{emulator.url}/api/v1/namespaces/demo-acme01/secrets/{SECRET}"
    body = json.dumps({"apiVersion": "v1", "kind": "Secret", "data": {"X": "eA=="}})
    headers = {"Content-Type": "application/apply-patch+yaml"}
    conflict = httpx.patch(
        f"{url}?fieldManager=kubectl", content=body, headers=headers, trust_env=False
    )
    assert conflict.status_code == 409
    assert conflict.json()["reason"] == "Conflict"
    forced = httpx.patch(
        f"{url}?fieldManager=kubectl&force=true", content=body, headers=headers, trust_env=False
    )
    assert forced.status_code == 200
    # democtl takes its Secret back the same way: force=true
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    assert by_name(cluster)["demo-acme01"].secret_present


def test_a_timeout_is_a_retryable_error(tmp_path: Path, repo: Path) -> None:
    faults = Faults(timeout=1.0, timeout_seconds=0.5)
    with KubernetesEmulator(tmp_path / "s", source=repo, faults=faults) as emu:
        adapter = KubernetesCluster.for_url(emu.url, secret_name=SECRET, timeout=0.2)
        with pytest.raises(ProviderError) as caught:
            adapter.list_namespaces()
        assert caught.value.retryable
        adapter.close()


def test_a_release_not_reconciled_at_its_current_generation_is_not_ready(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    assert by_name(cluster)["demo-acme01"].release_ready
    release = repo / "rendered" / "demo-acme01" / "release.yaml"
    release.write_text(
        release.read_text().replace("  interval: 5m\n", "  interval: 5m\n  suspend: true\n")
    )
    stale = by_name(cluster)["demo-acme01"]
    assert not stale.release_ready
    assert stale.release_message == "HelmRelease generation 2 not reconciled yet (at 1)"


def test_capacity_from_the_local_cluster(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "reconciler.yaml").write_text(
        (PROJECT / "reconciler.yaml").read_text().replace('totalCpu: "64"', 'totalCpu: "32"')
    )
    result = CliRunner().invoke(
        cli, ["capacity", "--from-cluster", "--local", "--format", "json", "--repo", str(repo)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["total"] == {"cpu": "32", "memory": "256Gi"}


def test_capacity_from_the_cluster_in_kubeconfig(
    tmp_path: Path, emulator: KubernetesEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from reconciler.local.stack import kubeconfig_document

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(PROJECT / "reconciler.yaml", repo / "reconciler.yaml")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(emulator.url)))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    args = ["capacity", "--from-cluster", "--format", "json", "--repo", str(repo)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"] == {"cpu": "15910m", "memory": "62Gi"}

    kubeconfig.write_text(yaml.safe_dump(kubeconfig_document("http://127.0.0.1:9")))
    unreachable = CliRunner().invoke(cli, args)
    assert unreachable.exit_code == 1
    assert "kubernetes list nodes" in unreachable.output
    assert "Traceback" not in unreachable.output


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_finds_its_way_through_discovery(
    tmp_path: Path, repo: Path, emulator: KubernetesEmulator
) -> None:
    import subprocess

    import yaml

    from reconciler.local.stack import kubeconfig_document

    render(repo, "demo-acme01")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(emulator.url)))
    result = subprocess.run(
        [str(shutil.which("kubectl")), "get", "hr", "-A", "-o", "json"],
        env={"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items] == [
        ("demo-acme01", "splits-network")
    ]


def test_pods_are_found_by_the_demo_label_the_chart_puts_on_them(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, "demo-acme01")
    release = repo / "rendered" / "demo-acme01" / "release.yaml"
    unlabelled = "".join(
        line
        for line in release.read_text().splitlines(keepends=True)
        if "commonLabels" not in line and "demos.splits.network/id: demo-acme01" not in line
    )
    release.write_text(unlabelled)
    cluster.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    # without the label the chart's pods are invisible to the cluster-wide selector...
    assert by_name(cluster)["demo-acme01"].pods_ready == 0
    # ...unless every pod of the cluster is listed
    everything = KubernetesCluster.for_url(emulator.url, secret_name=SECRET, pod_selector=None)
    assert by_name(everything)["demo-acme01"].pods_ready == 4
    everything.close()


@pytest.mark.parametrize(
    "mode, counted", [pytest.param("namespace", 4, id="namespace-default"), ("label", 0)]
)
def test_pod_selector_setting_decides_which_pods_count(
    repo: Path, emulator: KubernetesEmulator, mode: str, counted: int
) -> None:
    """kubernetes.podSelector: the default counts every pod of the demo's namespace, so a
    chart that does not copy the demo-id label into its pod templates still reads healthy."""
    from reconciler.model import KubernetesSettings
    from reconciler.providers.kubernetes import pod_selector_for

    assert KubernetesSettings().podSelector == "namespace"
    render(repo, "demo-acme01")
    release = repo / "rendered" / "demo-acme01" / "release.yaml"
    release.write_text(
        "".join(
            line
            for line in release.read_text().splitlines(keepends=True)
            if "commonLabels" not in line and "demos.splits.network/id: demo-acme01" not in line
        )
    )
    adapter = KubernetesCluster.for_url(
        emulator.url,
        secret_name=SECRET,
        pod_selector=pod_selector_for(KubernetesSettings(podSelector=mode).podSelector),  # type: ignore[arg-type]
    )
    adapter.apply_secret("demo-acme01", SECRET, CREDENTIALS)
    assert by_name(adapter)["demo-acme01"].pods_ready == counted
    adapter.close()


GOLDEN = PROJECT / "tests" / "golden"


@pytest.mark.skipif(not GOLDEN.is_dir(), reason="no golden renders in this tree")
@pytest.mark.parametrize(
    "case", sorted(p.name for p in GOLDEN.iterdir()) if GOLDEN.is_dir() else []
)
def test_golden_renders_sync_into_healthy_demos(tmp_path: Path, case: str) -> None:
    """What `democtl render` writes is what the emulator's Flux / Argo CD understands."""
    repo = tmp_path / "repo"
    shutil.copytree(GOLDEN / case, repo / "rendered")
    gitops = "argo" if case.startswith("argo") else "flux"
    with KubernetesEmulator(tmp_path / "state", source=repo) as emu:
        adapter = KubernetesCluster.for_url(emu.url, gitops=gitops, secret_name=SECRET)
        ids = sorted(p.name for p in (repo / "rendered").iterdir())
        for demo_id in ids:
            adapter.apply_secret(demo_id, SECRET, CREDENTIALS)
        states = adapter.list_namespaces()
        assert [s.demo_id for s in states] == ids
        for state in states:
            assert state.pods_expected > 0
            assert state.healthy, state
            assert state.pods_quota > 0
        adapter.close()


def test_values_echoed_by_a_server_are_scrubbed_from_errors() -> None:
    from kubernetes.client.exceptions import ApiException

    from reconciler.providers.kubernetes import convert_error

    password = CREDENTIALS["SUPABASE_DB_PASSWORD"]
    echoed = json.dumps(
        {
            "kind": "Status",
            "reason": "Invalid",
            "message": f'Secret "s" is invalid: data: Invalid value: "{password}" and '
            f'"{base64.b64encode(password.encode()).decode()}"',
        }
    )
    error = convert_error(
        ApiException(status=422, reason="Unprocessable", body=echoed),
        "apply secret",
        "demo-acme01",
        secrets=[password],
    )
    assert password not in str(error)
    assert base64.b64encode(password.encode()).decode() not in str(error)
    assert "[REDACTED]" in str(error)
    assert not error.retryable


def test_a_probe_without_an_answer_or_with_a_5xx_is_tried_once_more(
    repo: Path, emulator: KubernetesEmulator
) -> None:
    render(repo, "demo-acme01")
    server = emulator.health_server
    assert server is not None
    prober = HttpxProber(resolve={f"*.{DOMAIN}": emulator.health_url}, timeout=2)
    portal = f"https://demo-acme01-portal.{DOMAIN}/health"
    try:
        server.set_faults(Faults(drop=1.0))
        before = sum(server.requests.values())
        assert prober.probe(portal) is None  # no verdict, after a second try
        assert sum(server.requests.values()) - before == 2
        server.set_faults(Faults(server_error=1.0))
        before = sum(server.requests.values())
        assert prober.probe(portal) is False  # 503 twice: the second is the verdict
        assert sum(server.requests.values()) - before == 2
        server.set_faults(Faults())
        unknown = f"https://www.{DOMAIN}/health"
        before = sum(server.requests.values())
        assert prober.probe(unknown) is False  # 404: the verdict at once
        assert sum(server.requests.values()) - before == 1
    finally:
        prober.close()
