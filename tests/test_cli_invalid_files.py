"""Invalid demo files as `reconcile` and `run` report them: every cycle, once each.

A real state repository (bare origin and clone) on the local emulators. A new
demo file that is invalid and an invalid edit of a running demo are both
committed next to a valid new demo: each cycle prints each problem once as
`file:line: field: rule` (or a GitHub `::error` annotation), the valid demo
becomes ready all the same, the running demo is left as it is, and the command
exits 1 at the end so that CI shows it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gitrepo import commit_as, demo_yaml
from tests.test_cli_reconcile import NOW, NOW_TEXT, democtl, reconciled, state_repo, table_rows

BROKEN_NEW = "demos/demo-broken1.yaml"
# line 6 (`  type: ...`) of demo_yaml's layout carries the bad value
BROKEN_TYPE = demo_yaml("demo-broken1").replace("type: enterprise", "type: spaceship")
TTL_RULE = "spec.ttl"


@pytest.fixture(autouse=True)
def _fast_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMOCTL_LOCAL_COME_UP_SECONDS", "0")
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)


def _break_files(repo: Path) -> None:
    """A new invalid file, an invalid edit of the running demo-acme01, a new valid demo."""
    acme = (repo / "demos" / "demo-acme01.yaml").read_text()
    assert "ttl: 2h" in acme
    commit_as(
        repo,
        when=NOW,
        message="Add a broken demo, break acme, add a good one",
        files={
            BROKEN_NEW: BROKEN_TYPE,
            "demos/demo-acme01.yaml": acme.replace("ttl: 2h", "ttl: soon"),
            "demos/demo-good01.yaml": demo_yaml("demo-good01", "1h"),
        },
    )


def _invalid_lines(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip().startswith("invalid: ")]


def test_each_invalid_file_is_reported_once_per_cycle_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    _, repo = state_repo(tmp_path)
    reconciled(repo)
    _break_files(repo)
    code, out = democtl(repo, "reconcile", "--local", "--wait", "60s")
    assert code == 1, out  # an invalid file is a failed check, reported after the others ran
    cycles = out.count("\ncycle ") + out.startswith("cycle ")
    lines = _invalid_lines(out)
    broken = [line for line in lines if line.startswith(f"invalid: {BROKEN_NEW}:6: spec.type: ")]
    acme = [line for line in lines if line.startswith("invalid: demos/demo-acme01.yaml:")]
    assert len(broken) == cycles and len(acme) == cycles, out
    assert all(f": {TTL_RULE}: " in line for line in acme), acme
    assert len(lines) == 2 * cycles, out  # nothing else, and nothing twice in a cycle
    rows = table_rows(out)
    assert rows["demo-good01"][0] == "ready", out  # the bad files did not stop a good one
    acme_row = " ".join(rows["demo-acme01"])  # the running demo is left as it is
    assert acme_row.startswith("ready ") and "; file invalid, running as before" in acme_row
    assert rows["demo-broken1"] == ["invalid", "not", "started:", "invalid", "file"], out
    assert "Traceback" not in out


def test_github_format_and_github_actions_print_annotations(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    _break_files(repo)
    code, out = democtl(repo, "reconcile", "--local", "--format", "github")
    assert code == 1, out
    annotations = [line for line in out.splitlines() if line.startswith("::error ")]
    assert f"::error file={BROKEN_NEW},line=6,title=spec.type::" in "\n".join(annotations), out
    assert any(a.startswith("::error file=demos/demo-acme01.yaml,line=") for a in annotations)
    assert not _invalid_lines(out)
    # inside GitHub Actions the annotations are the default, placed from the workspace root
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GITHUB_ACTIONS", "true")
        mp.setenv("GITHUB_WORKSPACE", str(repo.parent))
        code, out = democtl(repo, "reconcile", "--local")
    assert code == 1, out
    assert f"::error file={repo.name}/{BROKEN_NEW},line=6,title=spec.type::" in out, out


def test_run_reports_invalid_files_every_cycle(tmp_path: Path) -> None:
    """`run` as a service: two cycles, each naming the broken file, then SIGTERM ends it."""
    _, repo = state_repo(tmp_path)
    commit_as(repo, when=NOW, message="Add a broken demo", files={BROKEN_NEW: BROKEN_TYPE})
    command = [sys.executable, "-m", "reconciler", "run", "--local", "--every", "1s"]
    command += ["--repo", str(repo), "--now", NOW_TEXT]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            for line in proc.stdout:
                seen.append(line)
                if sum(BROKEN_NEW in x for x in seen) >= 2:
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            rest, _ = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    cycle_lines = [line for line in out.splitlines() if " cycle: " in line]
    reports = [line for line in _invalid_lines(out) if line.startswith(f"invalid: {BROKEN_NEW}:6")]
    assert len(reports) >= 2 and len(reports) <= len(cycle_lines) + 1, out
    assert proc.returncode == 0, out  # the service goes on; the lines say what is wrong
    assert "Traceback" not in out
