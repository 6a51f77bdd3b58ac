"""The emulator's Flux and Argo CD behave as the controllers do, seen through the real client.

Each test writes `rendered/` the way democtl renders it, drives the emulator's clock by
hand (no sleeps), and observes through the `kubernetes` client and democtl's adapter:
the Kustomization's path and index (fluxcd/kustomize-controller), a values Secret with
and without `reconcile.fluxcd.io/watch: Enabled`, remediation retries that run out and
the reset that starts them again (fluxcd/helm-controller), an Application whose
sync failed after its retry limit and the `operation` that retries it, and a new
demo's Application whose pods wait for the Secret its values name (Argo CD).
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.providers.kubernetes import KubernetesCluster
from tests.test_kubernetes import CREDENTIALS, SECRET, render

NS = "demo-acme01"
FLUX = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")
ARGO = ("argoproj.io", "v1alpha1", "applications")


class Clock:
    """The emulator's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "state-repo"
    path.mkdir()
    return path


@pytest.fixture
def clock() -> Clock:
    return Clock()


def start(tmp_path: Path, repo: Path, clock: Clock, gitops: str = "flux") -> KubernetesEmulator:
    return KubernetesEmulator(tmp_path / "state", source=repo, clock=clock, gitops=gitops).start()


@pytest.fixture
def emulator(tmp_path: Path, repo: Path, clock: Clock) -> Iterator[KubernetesEmulator]:
    emu = start(tmp_path, repo, clock)
    yield emu
    emu.stop()


@pytest.fixture
def cluster(emulator: KubernetesEmulator) -> Iterator[KubernetesCluster]:
    adapter = KubernetesCluster.for_url(emulator.url, gitops="flux", secret_name=SECRET)
    yield adapter
    adapter.close()


def api(emulator: KubernetesEmulator) -> client.ApiClient:
    configuration = client.Configuration(host=emulator.url)
    configuration.api_key = {"BearerToken": "Bearer democtl-local"}
    configuration.proxy = None  # loopback: never through a proxy of the environment
    return client.ApiClient(configuration)


def custom(emulator: KubernetesEmulator, what: tuple[str, str, str], ns: str, name: str) -> Any:
    with api(emulator) as raw:
        group, version, plural = what
        return client.CustomObjectsApi(raw).get_namespaced_custom_object(
            group, version, ns, plural, name
        )


def kustomization(emulator: KubernetesEmulator) -> dict[str, Any]:
    found = custom(
        emulator,
        ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations"),
        "flux-system",
        "democtl-demos",
    )
    ready: dict[str, Any] = next(c for c in found["status"]["conditions"] if c["type"] == "Ready")
    return ready


def index(repo: Path, *folders: str) -> None:
    listed = "".join(f"  - {f}\n" for f in folders) if folders else "  []\n"
    text = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
    (repo / "rendered" / "kustomization.yaml").write_text(text + listed)


def namespaces(cluster: KubernetesCluster) -> list[str]:
    return [state.name for state in cluster.list_namespaces()]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


# --- kustomize-controller: the path and the index ----------------------------------------


def test_an_absent_path_fails_the_kustomization_and_prunes_nothing(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, NS)
    index(repo, NS)
    assert namespaces(cluster) == [NS]
    assert kustomization(emulator)["status"] == "True"
    assert kustomization(emulator)["message"].startswith("Applied revision: ")

    shutil.rmtree(repo / "rendered")  # what democtl did before rendered/ always existed
    assert namespaces(cluster) == [NS], "Flux fails before it prunes"
    failed = kustomization(emulator)
    assert (failed["status"], failed["reason"]) == ("False", "ArtifactFailed")
    assert failed["message"].startswith("kustomization path not found: stat ")

    (repo / "rendered").mkdir()
    index(repo)  # the path again, listing no demo: everything applied before is pruned
    assert namespaces(cluster) == []
    assert kustomization(emulator)["status"] == "True"
    assert emulator.inspect()["pods"] == []


def test_the_index_decides_which_folders_are_built(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, NS)
    render(repo, "demo-beta02")
    index(repo, NS)
    assert namespaces(cluster) == [NS], "a folder the index does not list is not built"
    index(repo, NS, "demo-beta02", "demo-gone03")
    assert namespaces(cluster) == [NS], "a listed folder that is missing fails the build"
    failed = kustomization(emulator)
    assert (failed["status"], failed["reason"]) == ("False", "BuildFailed")
    assert "demo-gone03" in failed["message"]
    index(repo, "demo-beta02")
    assert namespaces(cluster) == ["demo-beta02"]


# --- helm-controller: the watch label and the interval -----------------------------------


def digest(emulator: KubernetesEmulator) -> str:
    found: str = custom(emulator, FLUX, NS, "splits-network")["status"]["lastAttemptedConfigDigest"]
    return found


def apply_unwatched(emulator: KubernetesEmulator, url: str) -> None:
    """A Secret as someone else applies it: no `reconcile.fluxcd.io/watch` label."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NS, "labels": {"team": "platform"}},
        "data": {"SUPABASE_URL": base64.b64encode(url.encode()).decode()},
    }
    with api(emulator) as raw:
        client.CoreV1Api(raw).patch_namespaced_secret(
            SECRET,
            NS,
            body,
            field_manager="someone",
            force=True,
            _content_type="application/apply-patch+yaml",
        )


def test_a_watched_secret_reconciles_at_once_an_unwatched_one_waits_for_the_interval(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster, clock: Clock
) -> None:
    render(repo, NS)  # spec.interval: 5m
    cluster.apply_secret(NS, SECRET, CREDENTIALS)  # democtl's Secret carries the label
    first = digest(emulator)
    assert cluster.list_namespaces()[0].release_ready

    cluster.apply_secret(NS, SECRET, {**CREDENTIALS, "SUPABASE_URL": "https://b.supabase.co"})
    watched = digest(emulator)
    assert watched != first, "a watched Secret's change upgrades the release at once"

    clock.advance(minutes=1)
    apply_unwatched(emulator, "https://c.supabase.co")
    assert digest(emulator) == watched
    clock.advance(minutes=3, seconds=59)
    assert digest(emulator) == watched, "not before the interval"
    clock.advance(seconds=1)  # five minutes after the last reconcile
    assert digest(emulator) != watched


# --- helm-controller: retries run out, a reset starts again -------------------------------


def test_a_release_out_of_retries_stays_stalled_until_a_reset(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster, clock: Clock
) -> None:
    release = repo / "rendered" / NS / "release.yaml"
    render(repo, NS)
    release.write_text(
        release.read_text().replace(
            "  interval: 5m\n", "  interval: 5m\n  install:\n    remediation:\n      retries: 2\n"
        )
    )
    emulator.fail_release(NS, "splits-network", 3, "context deadline exceeded")
    cluster.apply_secret(NS, SECRET, CREDENTIALS)

    status = custom(emulator, FLUX, NS, "splits-network")["status"]
    stalled = condition(status, "Stalled")
    assert stalled is not None
    assert (stalled["status"], stalled["reason"]) == ("True", "RetriesExceeded")
    assert stalled["message"] == "Failed to install after 3 attempt(s)"
    ready = condition(status, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "InstallFailed")
    assert "context deadline exceeded" in ready["message"]
    state = cluster.list_namespaces()[0]
    assert state.release_stalled is not None
    assert not state.release_ready
    assert emulator.inspect()["pods"] == [], "a failed install is uninstalled"

    clock.advance(hours=1)  # a terminal error: no interval brings it back
    assert cluster.list_namespaces()[0].release_stalled == state.release_stalled

    assert state.release_object == (NS, "splits-network")
    cluster.reset_release(NS, "splits-network", "token-1")
    after = custom(emulator, FLUX, NS, "splits-network")
    assert after["status"]["lastHandledResetAt"] == "token-1"
    assert condition(after["status"], "Stalled") is None
    healthy = cluster.list_namespaces()[0]
    assert healthy.release_ready
    assert healthy.release_stalled is None
    assert healthy.healthy
    assert after["metadata"]["generation"] == 1, "annotations are not a new generation"

    render(repo, NS, services={"portal": 1})  # Flux applies rendered/ again
    applied = custom(emulator, FLUX, NS, "splits-network")
    assert applied["metadata"]["generation"] == 2
    assert applied["metadata"]["annotations"]["reconcile.fluxcd.io/resetAt"] == "token-1"


def test_a_reset_without_requested_at_or_a_handled_token_changes_nothing(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, NS)
    emulator.fail_release(NS, "splits-network", 2)
    cluster.apply_secret(NS, SECRET, CREDENTIALS)
    stalled = cluster.list_namespaces()[0].release_stalled
    assert stalled is not None
    with api(emulator) as raw:
        client.CustomObjectsApi(raw).patch_namespaced_custom_object(
            *FLUX[:2], NS, FLUX[2], "splits-network",
            {"metadata": {"annotations": {"reconcile.fluxcd.io/resetAt": "alone"}}},
        )  # fmt: skip
    assert cluster.list_namespaces()[0].release_stalled == stalled, "resetAt needs requestedAt"
    cluster.reset_release(NS, "splits-network", "t1")  # fails once more: stalled again
    again = cluster.list_namespaces()[0]
    assert again.release_stalled is not None
    assert not again.release_ready
    cluster.reset_release(NS, "splits-network", "t1")  # a handled token: nothing to do
    assert cluster.list_namespaces()[0].release_stalled == again.release_stalled
    cluster.reset_release(NS, "splits-network", "t2")
    assert cluster.list_namespaces()[0].release_ready


def pods(emulator: KubernetesEmulator) -> int:
    return len([p for p in emulator.inspect()["pods"] if p["namespace"] == NS])


def test_a_failed_upgrade_keeps_the_old_pods_until_the_spec_changes(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, NS, services={"portal": 1})
    cluster.apply_secret(NS, SECRET, CREDENTIALS)
    assert pods(emulator) == 1
    emulator.fail_release(NS, "splits-network", 1, "UPGRADE FAILED: timed out")
    render(repo, NS, services={"portal": 2})  # no upgrade retries: one failure stalls it
    status = custom(emulator, FLUX, NS, "splits-network")["status"]
    stalled = condition(status, "Stalled")
    assert stalled is not None
    assert stalled["message"] == "Failed to upgrade after 1 attempt(s)"
    assert pods(emulator) == 1, "the failed upgrade is rolled back"
    render(repo, NS, services={"portal": 3})  # a new generation clears the failure counts
    assert cluster.list_namespaces()[0].release_ready
    assert pods(emulator) == 3


def test_force_at_runs_one_upgrade_of_a_release_in_sync(
    repo: Path, emulator: KubernetesEmulator, cluster: KubernetesCluster
) -> None:
    render(repo, NS)
    cluster.apply_secret(NS, SECRET, CREDENTIALS)
    before = custom(emulator, FLUX, NS, "splits-network")["status"]["history"][0]["version"]
    token = "force-1"
    annotations = {"reconcile.fluxcd.io/requestedAt": token, "reconcile.fluxcd.io/forceAt": token}
    with api(emulator) as raw:
        for _ in range(2):  # the same token twice: one release
            client.CustomObjectsApi(raw).patch_namespaced_custom_object(
                *FLUX[:2], NS, FLUX[2], "splits-network", {"metadata": {"annotations": annotations}}
            )  # fmt: skip
    status = custom(emulator, FLUX, NS, "splits-network")["status"]
    assert status["lastHandledForceAt"] == token
    assert status["history"][0]["version"] == before + 1


# --- Argo CD: a sync that failed after its retry limit, and a new operation ---------------


def test_an_application_whose_sync_failed_waits_for_a_new_operation(
    tmp_path: Path, repo: Path, clock: Clock
) -> None:
    render(repo, NS, gitops="argo")
    release = repo / "rendered" / NS / "release.yaml"
    release.write_text(
        release.read_text().replace(
            "syncPolicy: {automated: {prune: true, selfHeal: true}}",
            "syncPolicy: {automated: {prune: true, selfHeal: true}, retry: {limit: 2}}",
        )
    )
    emu = KubernetesEmulator(tmp_path / "state", source=repo, clock=clock, gitops="argo")
    emu.fail_release("argocd", NS, 3, "one or more objects failed to apply")
    with emu:  # starting syncs rendered/: the Application's automated sync runs
        argo = KubernetesCluster.for_url(emu.url, gitops="argo", secret_name=SECRET)
        argo.apply_secret(NS, SECRET, CREDENTIALS)
        state = argo.list_namespaces()[0]
        assert state.release_stalled is not None
        assert not state.release_ready
        app = custom(emu, ARGO, "argocd", NS)
        operation = app["status"]["operationState"]
        assert (operation["phase"], operation["retryCount"]) == ("Failed", 2)
        assert operation["message"] == "one or more objects failed to apply (retried 2 times)."
        assert app["status"]["sync"]["status"] == "OutOfSync"

        release.write_text(release.read_text() + "\n")  # the same revision synced again
        clock.advance(hours=1)
        app = custom(emu, ARGO, "argocd", NS)
        assert app["status"]["operationState"]["finishedAt"] == operation["finishedAt"]
        sync_error = condition(app["status"], "SyncError")
        assert sync_error is not None
        assert sync_error["message"].startswith("Failed sync attempt to ")

        assert state.release_object == ("argocd", NS)
        argo.reset_release("argocd", NS, "token-1")
        app = custom(emu, ARGO, "argocd", NS)
        assert "operation" not in app, "the controller takes the operation it ran"
        assert "argocd.argoproj.io/refresh" not in (app["metadata"].get("annotations") or {})
        assert app["status"]["operationState"]["phase"] == "Succeeded"
        assert app["status"]["operationState"]["operation"]["initiatedBy"] == {
            "username": "democtl"
        }
        healthy = argo.list_namespaces()[0]
        assert healthy.release_ready
        assert healthy.release_stalled is None
        argo.close()


# --- Argo CD: the Application from the first render, its pods waiting for the Secret -----

GOLDEN_ARGO = Path(__file__).parent / "golden" / "argo-new" / NS


def test_an_application_rendered_before_the_secret_syncs_and_its_pods_wait_for_it(
    tmp_path: Path, repo: Path, clock: Clock
) -> None:
    """democtl's own render of a new demo: Argo syncs it at once, the pods stay in
    CreateContainerConfigError and the health Progressing until the Secret the values
    name (`supabase.existingSecret`) exists; a Secret of another name does not do."""
    shutil.copytree(GOLDEN_ARGO, repo / "rendered" / NS)
    # an emulator told of another Secret name: only the values decide what the pods read
    emulator = KubernetesEmulator(
        tmp_path / "state", source=repo, clock=clock, gitops="argo", secret_name="another-name"
    )
    with emulator.start() as emu:
        argo = KubernetesCluster.for_url(emu.url, gitops="argo", secret_name="another-name")
        app = custom(emu, ARGO, "argocd", f"{NS}-platform")
        assert app["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "1"}
        values = app["spec"]["source"]["helm"]["valuesObject"]
        assert "SUPABASE_URL" not in values["env"]
        assert values["supabase"]["existingSecret"] == SECRET

        def waiting() -> set[tuple[str, str]]:
            with api(emu) as raw:
                pods = client.CoreV1Api(raw).list_namespaced_pod(NS).items
            assert pods
            return {
                (s.state.waiting.reason, s.state.waiting.message)
                for p in pods
                for s in p.status.container_statuses
                if s.state.waiting is not None
            }

        argo.apply_secret(NS, "another-name", CREDENTIALS)
        state = argo.list_namespaces()[0]
        assert not state.release_ready and not state.healthy
        assert state.pods_ready == 0 and state.pods_expected > 0
        assert state.release_message.startswith("health Progressing, sync Synced")
        assert waiting() == {("CreateContainerConfigError", f'secret "{SECRET}" not found')}

        argo.apply_secret(NS, SECRET, CREDENTIALS)
        state = argo.list_namespaces()[0]
        assert state.release_ready and state.healthy, state.release_message
        assert state.release_message == "health Healthy, sync Synced"
        assert waiting() == set()
        argo.close()
