"""A cycle whose commit was lost is repaired, and the plan then settles to nothing.

On the local emulators with the real database module: the first cycle creates,
migrates and seeds a project, then its commit is lost (a crash before the
commit, a reset). The next cycles adopt the project, and must learn from the
database that it is migrated and seeded, not plan MIGRATE and SEED forever.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from reconciler.local.stack import LocalStack
from reconciler.loop import run_cycle
from reconciler.model import Phase, Settings
from reconciler.plan import ActionKind
from reconciler.wiring import local_providers
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, origin_and_clone

pytestmark = pytest.mark.e2e

NOW = BASE_TIME + timedelta(minutes=5)
DEMO = "demo-repair01"


def test_lost_cycle_commit_is_repaired_and_the_plan_settles(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    commit_as(repo, files={f"demos/{DEMO}.yaml": demo_yaml(DEMO)}, message=f"add {DEMO}")
    settings = Settings.model_validate(yaml.safe_load((repo / "reconciler.yaml").read_text()))
    with LocalStack(tmp_path / "world", repo, settings, come_up_seconds=0) as stack:
        providers = local_providers(stack)
        first = run_cycle(repo, providers, NOW)
        done = next(o.done for o in first.outcomes if o.demo_id == DEMO)
        assert {ActionKind.ENSURE_PROJECT, ActionKind.MIGRATE, ActionKind.SEED} <= set(done)

        git(repo, "reset", "--quiet", "--hard", "HEAD~1")  # the cycle's commit is lost
        assert not (repo / "status").exists()

        for minute in range(1, 7):
            result = run_cycle(repo, providers, NOW + timedelta(minutes=minute))
            if result.statuses[DEMO].phase is Phase.READY:
                break
        assert result.statuses[DEMO].phase is Phase.READY
        assert stack.supabase is not None
        assert len(stack.supabase.inspect()["projects"]) == 1, "adopted, not created twice"

        status = yaml.safe_load((repo / f"status/{DEMO}.yaml").read_text())
        assert status["supabase"]["seeded"] is True
        assert status["supabase"]["migrations"] != []

        settled = run_cycle(repo, providers, NOW + timedelta(minutes=10), dry_run=True)
        actions = {a.kind for d in settled.plan.demos for a in d.actions}
        assert not actions & {ActionKind.MIGRATE, ActionKind.SEED}, actions
