"""The Argo CD flavour end to end: one demo from a new file to ready on the local emulators.

A real state repository whose settings say `gitops: argo`, the real adapters
against a LocalStack (Kubernetes emulator playing Argo CD's part, Supabase
emulator over a real PostgreSQL, Cloudflare emulator), and the loop itself. It
checks what Argo CD would sync (an Application, no Flux objects), that the demo
becomes ready, and that the next cycle changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from reconciler.local.stack import LocalStack
from reconciler.loop import run_cycle
from reconciler.model import Phase, Settings
from reconciler.wiring import local_providers
from tests.gitrepo import (
    BASE_TIME,
    commit_as,
    demo_yaml,
    git,
    log_subjects,
    origin_and_clone,
    sample_settings,
)

pytestmark = pytest.mark.e2e

NOW = BASE_TIME + timedelta(minutes=5)
DEMO = "demo-argo01"


def argo_settings() -> str:
    text = sample_settings().decode()
    assert "\ngitops: flux\n" in text
    return text.replace("\ngitops: flux\n", "\ngitops: argo\n")


def test_argo_demo_reaches_ready_and_then_nothing_changes(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path, {"reconciler.yaml": argo_settings()})
    commit_as(repo, files={f"demos/{DEMO}.yaml": demo_yaml(DEMO)}, message=f"add {DEMO}")
    settings = Settings.model_validate(yaml.safe_load((repo / "reconciler.yaml").read_text()))
    with LocalStack(tmp_path / "world", repo, settings, come_up_seconds=0) as stack:
        providers = local_providers(stack)
        phase = None
        for minute in range(6):
            result = run_cycle(repo, providers, NOW + timedelta(minutes=minute))
            phase = result.statuses[DEMO].phase
            if phase is Phase.READY:
                break
        assert phase is Phase.READY, result.statuses[DEMO].conditions

        release = yaml.safe_load((repo / f"rendered/{DEMO}/release.yaml").read_text())
        assert release["apiVersion"] == "argoproj.io/v1alpha1"
        assert release["kind"] == "Application"
        assert release["spec"]["destination"]["namespace"] == DEMO
        rendered = "".join(p.read_text() for p in (repo / "rendered" / DEMO).iterdir())
        assert "toolkit.fluxcd.io" not in rendered, "an argo state repo holds no Flux objects"

        world = stack.inspect()["kubernetes"]
        apps = [r for r in world["releases"] if r["kind"] == "Application"]
        assert [a["name"] for a in apps] == [release["metadata"]["name"]]
        assert apps[0]["status"]["health"]["status"] == "Healthy"
        assert apps[0]["status"]["sync"]["status"] == "Synced"
        assert not [r for r in world["releases"] if r["kind"] == "HelmRelease"]

        status = yaml.safe_load((repo / f"status/{DEMO}.yaml").read_text())
        assert status["phase"] == "ready"
        assert f"{DEMO}: ready" in log_subjects(repo)
        # the service-role key and the database password live only in the Secret
        committed = git(repo, "log", "-p", "--all")
        public = {status["supabase"]["url"], status["supabase"]["anonKey"]}
        secrets = [v for v in stack.secret_values() if v not in public]
        assert len(secrets) == 2
        assert not [v for v in secrets if v in committed]

        head = git(repo, "rev-parse", "HEAD")
        again = run_cycle(repo, providers, NOW + timedelta(minutes=10))
        assert again.commit is None, "a converged argo demo commits nothing"
        assert git(repo, "rev-parse", "HEAD") == head
