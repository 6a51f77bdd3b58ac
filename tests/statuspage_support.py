"""A state repository for the status page tests: every kind of demo a page has to show.

A real git repository (bare origin and clone, tests.gitrepo): a ready demo whose
company is `<script>` and whose status carries an anon key, one queued for
capacity, one failed, one invalid file, one being torn down; then a democtl cycle
commit, whose time is the page's "last cycle".
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.gitstate import DemoChange, commit_cycle
from reconciler.model import Condition, Phase
from reconciler.statusfile import status_bytes
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, make_status, origin_and_clone

T1 = BASE_TIME + timedelta(hours=1)
CYCLE = T1 + timedelta(minutes=5)
NOW = (T1 + timedelta(minutes=30)).isoformat()
COMPANY = "<script>alert(1)</script> & Co | Ltd"  # a pipe would end a Markdown cell
ANON_KEY = "eyJhbGciOiJIUzI1NiJ9.status-page-anon-key-never-shown"
TOKEN = "sbp_status_page_token_never_shown_0123456789"
DEMO_IDS = ("demo-a", "demo-bad", "demo-c", "demo-gone", "demo-q")
BAD_RULE = (
    "demos/demo-bad.yaml:6: spec.type: must be 'recruiting-agency', 'enterprise' or 'startup'"
)


def _branded(demo_id: str) -> str:
    return demo_yaml(demo_id, "2h") + f'  branding:\n    companyName: "{COMPANY}"\n'


def state_repo(tmp_path: Path) -> Path:
    _, work = origin_and_clone(tmp_path)
    bad = demo_yaml("demo-bad", "2h").replace("type: enterprise", "type: nonsense")
    commit_as(
        work,
        when=T1,
        files={
            "demos/demo-a.yaml": _branded("demo-a"),
            "demos/demo-q.yaml": demo_yaml("demo-q", "3h", owner="bob@splits.network"),
            "demos/demo-c.yaml": demo_yaml("demo-c", "1h"),
            "demos/demo-bad.yaml": bad,
        },
        message="Add demos",
    )
    ready = make_status("demo-a", Phase.READY)
    ready = ready.model_copy(
        update={"supabase": ready.supabase.model_copy(update={"anonKey": ANON_KEY})}
    )
    queued = make_status("demo-q", Phase.PENDING).model_copy(
        update={"queuePosition": 1, "conditions": [], "message": "waiting for capacity"}
    )
    failed = make_status("demo-c", Phase.FAILED).model_copy(
        update={
            "message": "Supabase project creation failed: quota exceeded",
            "attempts": 5,
            "conditions": [
                Condition(
                    type="Stalled",
                    status="True",
                    reason="ProvisionFailed",
                    message="Supabase project creation failed: quota exceeded",
                    lastTransitionTime=CYCLE,
                )
            ],
        }
    )
    gone = make_status("demo-gone", Phase.DESTROYING)
    commit_cycle(
        work,
        {f"status/{s.id}.yaml": status_bytes(s) for s in (ready, queued, failed, gone)},
        [
            DemoChange("demo-a", "ready"),
            DemoChange("demo-c", "failed"),
            DemoChange("demo-gone", "destroying"),
            DemoChange("demo-q", "pending"),
        ],
        when=CYCLE,
    )
    return work


def page(work: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["status-page", "--repo", str(work), "--now", NOW, *args], env=env
    )
    return result.exit_code, result.stdout, result.stderr
