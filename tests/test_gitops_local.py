"""Flux and Argo CD behaviour end to end in local mode: the loop, real git, the emulators.

A real state repository, the real adapters against a LocalStack (the Kubernetes
emulator playing Flux's or Argo CD's part from the clone's `rendered/`), and
`run_cycle` itself. The last demo's expiry prunes its namespace because `rendered/`
keeps a `kustomization.yaml` (with `rendered/` gone, as democtl once left it, the
Kustomization fails and prunes nothing); a release that used up its retries is reset
by democtl once, through the real adapter, and becomes ready.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import database, loop
from reconciler.local.stack import LocalStack
from reconciler.loop import CycleOptions, CycleResult, run_cycle
from reconciler.model import Phase, Settings
from reconciler.wiring import local_providers
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, origin_and_clone, sample_settings

pytestmark = pytest.mark.e2e

DEMO = "demo-acme01"
NOW = BASE_TIME + timedelta(minutes=5)
OPTIONS = CycleOptions(known_migrations=tuple(m.version for m in database.load_migrations()))


def settings_of(repo: Path) -> Settings:
    return Settings.model_validate(yaml.safe_load((repo / "reconciler.yaml").read_text()))


def until_ready(repo: Path, stack: LocalStack, start: Any, cycles: int = 8) -> list[CycleResult]:
    providers = local_providers(stack)
    results = []
    for minute in range(cycles):
        results.append(run_cycle(repo, providers, start + timedelta(minutes=minute), OPTIONS))
        status = results[-1].statuses.get(DEMO)
        if status is not None and status.phase is Phase.READY:
            return results
    raise AssertionError(f"not ready after {cycles} cycles: {results[-1].statuses}")


def k8s(stack: LocalStack) -> dict[str, Any]:
    world: dict[str, Any] = stack.inspect()["kubernetes"]
    return world


def kustomization_ready(stack: LocalStack) -> dict[str, Any]:
    [found] = k8s(stack)["kustomizations"]
    ready: dict[str, Any] = next(c for c in found["status"]["conditions"] if c["type"] == "Ready")
    return ready


def demo_namespaces(stack: LocalStack) -> list[str]:
    return [n["name"] for n in k8s(stack)["namespaces"] if n["name"].startswith("demo-")]


def expire(repo: Path, stack: LocalStack) -> None:
    """Let the demo expire: the cycles delete its project and DNS, then remove its files."""
    providers = local_providers(stack)
    later = BASE_TIME + timedelta(hours=2, minutes=1)
    for minute in range(4):
        result = run_cycle(repo, providers, later + timedelta(minutes=minute), OPTIONS)
        if DEMO not in result.statuses and result.commit is None:
            return
    raise AssertionError(f"{DEMO} not torn down: {result.statuses}")


def test_the_last_demo_expired_has_its_namespace_pruned(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    commit_as(repo, files={f"demos/{DEMO}.yaml": demo_yaml(DEMO)}, message=f"add {DEMO}")
    with LocalStack(tmp_path / "world", repo, settings_of(repo), come_up_seconds=0) as stack:
        until_ready(repo, stack, NOW)
        assert demo_namespaces(stack) == [DEMO]
        assert kustomization_ready(stack)["status"] == "True"

        expire(repo, stack)
        index = yaml.safe_load(git(repo, "show", "HEAD:rendered/kustomization.yaml"))
        assert index["resources"] == []
        assert demo_namespaces(stack) == [], "the Kustomization prunes the last demo"
        ready = kustomization_ready(stack)
        assert (ready["status"], ready["reason"]) == ("True", "ReconciliationSucceeded")
        assert not [p for p in k8s(stack)["pods"] if p["namespace"] == DEMO]
        assert not [r for r in k8s(stack)["releases"] if r["namespace"] == DEMO]


def test_without_rendered_the_kustomization_fails_and_the_last_demo_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # democtl before rendered/kustomization.yaml: removing the last folder removed rendered/
    monkeypatch.setattr(loop, "index_write", lambda existing, writes: {})
    _, repo = origin_and_clone(tmp_path)
    commit_as(repo, files={f"demos/{DEMO}.yaml": demo_yaml(DEMO)}, message=f"add {DEMO}")
    with LocalStack(tmp_path / "world", repo, settings_of(repo), come_up_seconds=0) as stack:
        until_ready(repo, stack, NOW)
        assert not (repo / "rendered" / "kustomization.yaml").exists()

        expire(repo, stack)
        assert git(repo, "ls-files", "rendered").strip() == ""
        if (repo / "rendered").exists():
            shutil.rmtree(repo / "rendered")  # as a checkout of that commit holds it: no path
        assert demo_namespaces(stack) == [DEMO], "nothing is pruned"
        failed = kustomization_ready(stack)
        assert (failed["status"], failed["reason"]) == ("False", "ArtifactFailed")
        assert failed["message"].startswith("kustomization path not found")
        assert [p for p in k8s(stack)["pods"] if p["namespace"] == DEMO], "its pods keep running"


def test_a_release_out_of_retries_is_reset_once_and_becomes_ready(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    commit_as(repo, files={f"demos/{DEMO}.yaml": demo_yaml(DEMO)}, message=f"add {DEMO}")
    with LocalStack(tmp_path / "world", repo, settings_of(repo), come_up_seconds=0) as stack:
        assert stack.kubernetes is not None
        # install.remediation.retries is 3: four failed installs use them up
        stack.kubernetes.fail_release(DEMO, "platform", 4, "timed out waiting for the condition")
        results = until_ready(repo, stack, NOW)

        phases = [r.statuses[DEMO].phase for r in results if DEMO in r.statuses]
        assert Phase.DEGRADED in phases, phases
        resets = [
            a
            for r in results
            for d in r.plan.demos
            for a in d.actions
            if a.kind.value == "reset-release"
        ]
        assert len(resets) == 1
        assert resets[0].release_object == (DEMO, "platform")
        assert stack.kubernetes.api_server is not None
        assert stack.kubernetes.api_server.requests["PATCH helmreleases"] == 1
        [release] = [r for r in k8s(stack)["releases"] if r["namespace"] == DEMO]
        assert release["status"]["lastHandledResetAt"] == resets[0].reset_token
        assert not [c for c in release["status"]["conditions"] if c["type"] == "Stalled"]
        status = yaml.safe_load((repo / f"status/{DEMO}.yaml").read_text())
        assert status["phase"] == "ready"
        assert status["releaseResetFor"] == resets[0].reset_for

        providers = local_providers(stack)
        for minute in (20, 40):
            again = run_cycle(repo, providers, NOW + timedelta(minutes=minute), OPTIONS)
            assert again.statuses[DEMO].phase is Phase.READY
        assert stack.kubernetes.api_server.requests["PATCH helmreleases"] == 1, "one reset"


def test_an_argo_application_out_of_sync_retries_is_retried_once_and_becomes_ready(
    tmp_path: Path,
) -> None:
    text = sample_settings().decode().replace("\ngitops: flux\n", "\ngitops: argo\n")
    _, repo = origin_and_clone(tmp_path, {"reconciler.yaml": text})
    commit_as(repo, files={f"demos/{DEMO}.yaml": demo_yaml(DEMO)}, message=f"add {DEMO}")
    with LocalStack(tmp_path / "world", repo, settings_of(repo), come_up_seconds=0) as stack:
        assert stack.kubernetes is not None
        # syncPolicy.retry.limit is 5: six failed attempts use the retries up
        application = f"{DEMO}-platform"
        stack.kubernetes.fail_release("argocd", application, 6, "one or more objects failed")
        results = until_ready(repo, stack, NOW)

        resets = [
            a
            for r in results
            for d in r.plan.demos
            for a in d.actions
            if a.kind.value == "reset-release"
        ]
        assert len(resets) == 1
        assert resets[0].release_object == ("argocd", application)
        assert stack.kubernetes.api_server is not None
        assert stack.kubernetes.api_server.requests["PATCH applications"] == 1
        [app] = [r for r in k8s(stack)["releases"] if r["kind"] == "Application"]
        assert app["status"]["operationState"]["phase"] == "Succeeded"
        assert app["status"]["sync"]["status"] == "Synced"

        providers = local_providers(stack)
        for minute in (20, 40):
            again = run_cycle(repo, providers, NOW + timedelta(minutes=minute), OPTIONS)
            assert again.statuses[DEMO].phase is Phase.READY
        assert stack.kubernetes.api_server.requests["PATCH applications"] == 1, "one retry"
