"""The reconcile-loop commands (plan, reconcile, run, status) as a user runs them.

Each test builds a real state repository (a bare origin and a clone) from the
project's own reconciler.yaml and sample demos, and drives democtl in local
mode: real git, the real emulators, real PostgreSQL. Click's CliRunner runs the
commands in-process; a subprocess is used where signals, exit codes of the
real entry point or tracebacks matter. Projects come up at once
(DEMOCTL_LOCAL_COME_UP_SECONDS=0) and the clock is fixed with --now.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.local import local_state_dir
from reconciler.local.cloudflare_emulator import CloudflareEmulator
from reconciler.wiring import local_state_repo
from tests.gitrepo import BASE_TIME, PROJECT, clone, commit_as, demo_yaml, git, log_subjects

NOW = BASE_TIME + timedelta(hours=3)
NOW_TEXT = NOW.isoformat()
DEMOS = ("demo-acme01", "demo-rocket", "demo-talentco")
SECRET_VARIABLES = ("SUPABASE_ACCESS_TOKEN", "CLOUDFLARE_API_TOKEN", "GITHUB_TOKEN")
TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _fast_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMOCTL_LOCAL_COME_UP_SECONDS", "0")
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def sample_files() -> dict[str, bytes]:
    files = {"reconciler.yaml": (PROJECT / "reconciler.yaml").read_bytes()}
    for path in sorted((PROJECT / "demos").glob("*.yaml")):
        files[f"demos/{path.name}"] = path.read_bytes()
    return files


def state_repo(tmp: Path) -> tuple[Path, Path]:
    """(bare origin, clone) holding the sample settings and demos in one commit."""
    origin = tmp / "origin.git"
    git(tmp, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    seed = tmp / "seed"
    git(tmp, "init", "--quiet", "--initial-branch=main", str(seed))
    commit_as(seed, when=BASE_TIME, files=sample_files(), message="Add the sample demos")
    git(seed, "push", "--quiet", str(origin), "main")
    return origin, clone(origin, tmp / "clone")


def democtl(repo: Path, *args: str, now: str = NOW_TEXT) -> tuple[int, str]:
    """Run a command in-process with --repo and --now; (exit code, stdout + stderr)."""
    result = CliRunner().invoke(cli, [*args, "--repo", str(repo), "--now", now])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def reconciled(repo: Path, *extra: str, now: str = NOW_TEXT) -> str:
    code, out = democtl(repo, "reconcile", "--local", "--wait", "60s", *extra, now=now)
    assert code == 0, out
    return out


def world(repo: Path) -> dict[str, Any]:
    """`local inspect --format json`, less the one field that moves with the wall clock.

    A project's status is derived from its age (COMING_UP, then ACTIVE_HEALTHY),
    and `local inspect` reads it with the emulator's default come-up time.
    """
    code, out = democtl(repo, "local", "inspect", "--format", "json")
    assert code == 0, out
    data: dict[str, Any] = json.loads(out)
    for project in data.get("supabase", {}).get("projects", []):
        project.pop("status", None)
    return data


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def tree_snapshot(repo: Path) -> dict[str, bytes]:
    """Every file of the working tree outside .git and the local state folder."""
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and not {".git", ".democtl"} & set(p.relative_to(repo).parts)
    }


def table_rows(out: str) -> dict[str, list[str]]:
    """The summary table at the end of a reconcile, by demo id."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["demo", "phase"])
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One repository whose three sample demos are ready; tests here only read it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEMOCTL_LOCAL_COME_UP_SECONDS", "0")
        _, repo = state_repo(tmp_path_factory.mktemp("converged"))
        reconciled(repo)
        yield repo


# --- plan ------------------------------------------------------------------------------


def test_plan_in_every_format_changes_nothing_anywhere(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    before_head, before_files = head(repo), tree_snapshot(repo)
    before_world = world(repo)
    outputs = {}
    for fmt in ("text", "markdown", "json"):
        code, outputs[fmt] = democtl(repo, "plan", "--local", "--format", fmt)
        assert code == 0, outputs[fmt]
    after = world(repo)
    assert after == before_world  # the emulators started and created nothing
    assert after["kubernetes"]["namespaces"] == []
    assert after["cloudflare"]["records"] == []
    assert not after.get("supabase", {}).get("projects")
    assert head(repo) == before_head and tree_snapshot(repo) == before_files
    assert git(repo, "status", "--porcelain") == ""  # .democtl ignores itself
    assert not local_state_repo(repo).exists()  # no scratch state either
    for demo_id in DEMOS:
        assert demo_id in outputs["text"]
    plan = json.loads(outputs["json"])
    assert plan["changes"] is True
    assert [d["id"] for d in plan["demos"]] == sorted(DEMOS)
    for item in plan["demos"]:
        kinds = [a["kind"] for a in item["actions"]]
        assert "ensure-project" in kinds and "ensure-dns" in kinds, item
    markdown = outputs["markdown"]
    assert markdown.startswith("### democtl plan\n")
    assert "| demo | phase | will | expires | why |" in markdown
    for demo_id in DEMOS:
        assert f"| `{demo_id}` | new |" in markdown
    assert "3 demo(s): 3 with changes, 0 up to date." in markdown


def test_plan_of_a_converged_repository_says_up_to_date(converged: Path) -> None:
    before_world, before_head = world(converged), head(local_state_repo(converged))
    code, out = democtl(converged, "plan", "--local")
    assert code == 0, out
    assert out.rstrip().endswith("No changes: every demo is up to date.")
    code, out = democtl(converged, "plan", "--local", "--format", "markdown")
    assert code == 0 and "3 demo(s): 0 with changes, 3 up to date." in out
    assert world(converged) == before_world
    assert head(local_state_repo(converged)) == before_head


def test_plan_past_expiry_shows_teardown_without_doing_it(converged: Path) -> None:
    later = (NOW + timedelta(hours=3)).isoformat()
    before = world(converged)
    code, out = democtl(converged, "plan", "--local", "--format", "json", now=later)
    assert code == 0, out
    by_id = {d["id"]: d for d in json.loads(out)["demos"]}
    assert by_id["demo-acme01"]["intent"] == "teardown"  # 2h ttl
    assert [a["kind"] for a in by_id["demo-acme01"]["actions"]] == [
        "delete-dns",
        "delete-project",
        "remove-files",
    ]
    assert by_id["demo-rocket"]["intent"] == "provision"  # 24h ttl
    assert world(converged) == before


def test_plan_sees_a_demo_committed_since_the_last_reconcile(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    reconciled(repo)
    scratch = local_state_repo(repo)
    scratch_head, before = head(scratch), world(repo)
    commit_as(repo, when=NOW, files={"demos/demo-new01.yaml": demo_yaml("demo-new01", "1h")})
    code, out = democtl(repo, "plan", "--local", "--format", "json")
    assert code == 0, out
    by_id = {d["id"]: d for d in json.loads(out)["demos"]}
    assert by_id["demo-new01"]["intent"] == "provision"
    assert "ensure-project" in [a["kind"] for a in by_id["demo-new01"]["actions"]]
    # its clock starts when local mode merges it, as the next reconcile would
    assert by_id["demo-new01"]["expiresAt"] == (NOW + timedelta(hours=1)).isoformat()
    assert head(scratch) == scratch_head and world(repo) == before
    assert not (scratch / "demos" / "demo-new01.yaml").exists()


def test_dry_run_prints_the_plan(converged: Path) -> None:
    later = (NOW + timedelta(hours=3)).isoformat()
    _, planned = democtl(converged, "plan", "--local", now=later)
    before = head(local_state_repo(converged))
    code, out = democtl(converged, "reconcile", "--local", "--dry-run", now=later)
    assert code == 0, out
    assert out == planned
    assert head(local_state_repo(converged)) == before


def test_plan_with_unusable_settings_exits_2(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    (repo / "reconciler.yaml").write_text("kind: nope\n")
    for args in (
        ("plan", "--local"),
        ("plan",),
        ("reconcile", "--local"),
        ("status", "demo-acme01"),
        ("status", "demo-acme01", "--local"),
        ("run", "--local"),
    ):
        code, out = democtl(repo, *args)
        assert code == 2, (args, out)
        assert "reconciler.yaml" in out and "Traceback" not in out


# --- reconcile -------------------------------------------------------------------------


def test_reconcile_reports_each_demo_then_a_summary(tmp_path: Path) -> None:
    origin, repo = state_repo(tmp_path)
    user_head = head(repo)
    out = reconciled(repo)
    lines = out.splitlines()
    # a heading per cycle, then a progress line per demo as it goes, then the cycle's result
    first_cycle = next(i for i, line in enumerate(lines) if line.startswith("cycle 1 ("))
    first_result = next(i for i, line in enumerate(lines) if line.startswith("  = cycle 1 "))
    for demo_id in DEMOS:
        progress = lines[first_cycle + 1 : first_result]
        assert any(line.startswith(f"  {demo_id}: ") for line in progress), out
        assert f"  * {demo_id}: creating -> ready  https://{demo_id}-portal." in out
    rows = table_rows(out)
    assert sorted(rows) == sorted(DEMOS)
    assert all(row[0] == "ready" for row in rows.values()), rows
    assert rows["demo-acme01"][1] == "in" and rows["demo-acme01"][2].startswith("1h59m")
    assert "Next: democtl list --local" in out
    # without --push the user's branch and the origin got nothing: a scratch clone did
    assert head(repo) == user_head and git(repo, "status", "--porcelain") == ""
    assert git(origin, "rev-parse", "main").strip() == user_head
    scratch = local_state_repo(repo)
    assert "demo-acme01: ready" in "\n".join(log_subjects(scratch))
    # a second reconcile finds nothing to do and commits nothing
    scratch_head = head(scratch)
    again = reconciled(repo)
    assert "  = cycle 1 had nothing to commit" in again
    assert head(scratch) == scratch_head


def test_local_reconcile_names_the_demo_files_it_does_not_see(tmp_path: Path) -> None:
    """Local mode reconciles commits; a demo file written but not committed is named, once."""
    _, repo = state_repo(tmp_path)
    (repo / "demos" / "demo-draft1.yaml").write_text(demo_yaml("demo-draft1", "1h"))
    acme = repo / "demos" / "demo-acme01.yaml"
    acme.write_text(acme.read_text().replace("ttl: 2h", "ttl: 3h"))
    (repo / "notes.txt").write_text("not a demo file\n")
    code, out = democtl(repo, "reconcile", "--local")
    assert code == 0, out
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: not committed, so not reconciled (--local reconciles commits): "
        "demos/demo-acme01.yaml, demos/demo-draft1.yaml"
    ], out
    assert "demo-draft1" not in table_rows(out)
    commit_as(repo, when=NOW, message="draft", files={})
    code, out = democtl(repo, "plan", "--local")
    assert code == 0 and "note: " not in out, out


def test_reconcile_past_expiry_tears_down_and_removes_the_files(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    reconciled(repo)
    out = reconciled(repo, now=(NOW + timedelta(days=1)).isoformat())
    for demo_id in DEMOS:
        # one cycle deletes what the demo had and removes its files
        assert f"  * {demo_id}: ready -> removed" in out, out
    assert "  = cycle 1 committed" in out and "  = cycle 2 had nothing to commit" in out
    scratch = local_state_repo(repo)
    assert not list(scratch.glob("demos/*.yaml")) and not list(scratch.glob("status/*"))
    # rendered/ stays, with an index that lists no demo, so Flux prunes the last one
    assert [p.name for p in scratch.glob("rendered/*")] == ["kustomization.yaml"]
    index = yaml.safe_load((scratch / "rendered" / "kustomization.yaml").read_text())
    assert index["kind"] == "Kustomization" and index["resources"] == []
    assert log_subjects(scratch)[0].startswith("demo-acme01: ")
    assert "Demo-Action: " in git(scratch, "log", "-1", "--format=%B")
    after = world(repo)
    assert after["cloudflare"]["records"] == []
    # deleted projects stay listed a while (GOING_DOWN), their databases gone at once
    assert [p["database"] for p in after["supabase"]["projects"]] == [None] * len(DEMOS)


def test_reconcile_exits_1_when_an_action_fails(tmp_path: Path) -> None:
    """A DNS name someone else already holds: democtl refuses to overwrite it, and says so.

    The foreign record is written into the local Cloudflare emulator's persisted
    zone before the first cycle, as an existing zone would hold it.
    """
    _, repo = state_repo(tmp_path)
    name = "demo-acme01-portal.splits.network"
    state = local_state_dir(repo)
    state.mkdir(parents=True)
    CloudflareEmulator(state, zone_name="splits.network").seed_record(
        type="CNAME", name=name, content="marketing.example.com", comment="marketing site"
    )
    code, out = democtl(repo, "reconcile", "--local", "--wait", "60s")
    assert code == 1, out
    rows = table_rows(out)
    assert rows["demo-acme01"][3] == "FAILED:", rows
    assert name in out and "not ours" in out
    # the other demos were not held up by it
    assert rows["demo-rocket"][0] == "ready" and rows["demo-talentco"][0] == "ready"
    records = world(repo)["cloudflare"]["records"]
    assert [r["content"] for r in records if r["name"] == name] == ["marketing.example.com"]


def test_mass_deletion_is_refused_unless_allowed(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    reconciled(repo)
    commit_as(
        repo,
        when=NOW,
        files={f"demos/{d}.yaml": None for d in DEMOS},
        message="Remove every demo",
    )
    code, out = democtl(repo, "reconcile", "--local")
    assert code == 1, out  # a refused teardown fails the run, so CI goes red
    assert "REFUSED: 3 of 3 live demos vanished" in out and "--allow-mass-delete" in out
    assert len(list((local_state_repo(repo) / "status").glob("*.yaml"))) == 3
    assert len(world(repo)["cloudflare"]["records"]) == 9
    code, markdown = democtl(repo, "plan", "--local", "--format", "markdown")
    assert code == 0
    caution = markdown.index("> [!CAUTION]\n> 3 of 3 live demos vanished")
    assert caution < markdown.index("| demo | phase |")  # what needs a human comes first
    assert markdown.count("3 of 3 live demos vanished") == 1  # quoted once, not per row
    assert "| `demo-acme01` | ready | nothing |" in markdown
    assert "3 demo(s): 0 with changes, 3 held by the refusal, 0 up to date." in markdown
    code, text = democtl(repo, "plan", "--local")
    assert code == 0 and "REFUSED: " in text and "No changes" not in text
    out = reconciled(repo, "--allow-mass-delete")
    assert world(repo)["cloudflare"]["records"] == []
    assert not list((local_state_repo(repo) / "status").glob("*.yaml")), out


def test_reconcile_push_commits_on_the_checkout_and_pushes(tmp_path: Path) -> None:
    origin, repo = state_repo(tmp_path)
    # with --push the checkout's own history dates the demos: an hour after they landed
    reconciled(repo, "--push", now=(BASE_TIME + timedelta(hours=1)).isoformat())
    subjects = log_subjects(origin, "main")
    assert any(s.startswith("demo-acme01: ") for s in subjects), subjects
    assert git(origin, "rev-parse", "main").strip() == head(repo)
    assert (repo / "status" / "demo-acme01.yaml").is_file()
    assert "phase: ready" in (repo / "status" / "demo-acme01.yaml").read_text()
    other = clone(origin, tmp_path / "other")
    assert (other / "rendered" / "demo-acme01").is_dir()


# --- status ----------------------------------------------------------------------------


def test_status_text_json_and_live(converged: Path) -> None:
    code, out = democtl(converged, "status", "demo-acme01", "--local")
    assert code == 0, out
    assert out.startswith("demo-acme01  ready\n")
    assert "portal: https://demo-acme01-portal.splits.network" in out
    assert "Ready=True Ready" in out and "Stalled=False None" not in out
    code, out = democtl(converged, "status", "demo-acme01", "--local", "--live", "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["phase"] == "ready" and data["live"]["pods"].endswith("ready")
    assert data["live"]["secret"] == "present"
    assert "anonKey" in data["supabase"]
    conditions = {c["type"]: c for c in data["conditions"]}
    assert conditions["Stalled"]["status"] == "False" and conditions["Stalled"]["reason"]


def test_reading_commands_leave_the_local_world_as_it_is(tmp_path: Path) -> None:
    """Only reconcile changes the emulated world: capacity, status --live and inspect read it.

    The user's checkout has no rendered/ (local mode renders into its scratch
    state); a Kubernetes emulator started on it would prune every namespace.
    """
    _, repo = state_repo(tmp_path)
    reconciled(repo)
    scratch = local_state_repo(repo)
    before_world, before_head = world(repo), head(scratch)
    assert len(before_world["kubernetes"]["namespaces"]) == 3
    code, out = democtl(repo, "capacity", "--from-cluster", "--local", "--format", "json")
    assert code == 0, out
    assert json.loads(out)["used"]["demos"] == 3
    code, out = democtl(repo, "status", "demo-acme01", "--local", "--live", "--format", "json")
    assert code == 0, out
    assert json.loads(out)["live"]["secret"] == "present"
    assert world(repo) == before_world
    code, out = democtl(repo, "reconcile", "--local")
    assert code == 0, out
    assert "= cycle 1 had nothing to commit" in out, out
    assert head(scratch) == before_head
    assert all(row[0] == "ready" for row in table_rows(out).values()), out


def test_status_of_an_unknown_demo_exits_1(converged: Path) -> None:
    code, out = democtl(converged, "status", "demo-nope", "--local")
    assert code == 1
    assert "no status for demo-nope" in out and "demo-acme01" in out
    # without --local the user's checkout holds no status files
    code, out = democtl(converged, "status", "demo-acme01")
    assert code == 1 and "no status for demo-acme01" in out


# --- run -------------------------------------------------------------------------------


class Process:
    """democtl as a subprocess whose output lines are read with a deadline, never a sleep."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *args],
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "DEMOCTL_LOCAL_COME_UP_SECONDS": "0", **(env or {})},
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.seen: list[tuple[str, str]] = []
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._pump, args=(name, stream), daemon=True).start()

    def _pump(self, name: str, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))

    def expect(self, stream: str, text: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                name, line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"no {stream} line with {text!r}; saw {self.seen}") from None
            self.seen.append((name, line))
            if name == stream and text in line:
                return line

    def finish(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout=timeout)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    def output(self) -> str:
        return "\n".join(line for _, line in self.seen)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_finishes_the_cycle_on_sigterm_and_serves_metrics(converged: Path) -> None:
    port = free_port()
    args = ["run", "--local", "--every", "1s", "--metrics-port", str(port)]
    proc = Process([*args, "--repo", str(converged), "--now", NOW_TEXT])
    try:
        proc.expect("out", " cycle: 3 demos; up to date")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        ready = re.findall(r'^democtl_demos\{phase="ready",[^}]*\} (\S+)$', text, re.MULTILINE)
        assert sum(float(n) for n in ready) == 3.0, text
        assert 'democtl_cycles_total{outcome="ok"}' in text
        assert 'democtl_demo_pods_ready{demo="demo-acme01"}' in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.finish() == 0, proc.output()
    finally:
        proc.proc.kill()
    assert "finishing the current cycle" in proc.output()
    assert "Traceback" not in proc.output()


def test_run_with_a_metrics_port_in_use_exits_2(converged: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["run", "--local", "--metrics-port", str(port), "--repo", str(converged)]
        proc = Process(args)
        assert proc.finish() == 2, proc.output()
    assert f"cannot serve metrics on port {port}" in proc.output()
    assert "Traceback" not in proc.output()


def test_sigterm_during_a_cycle_lets_it_finish_and_commit(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    kubeconfig = local_state_dir(repo) / "kubeconfig"
    proc = Process(["run", "--local", "--every", "1s", "--repo", str(repo), "--now", NOW_TEXT])
    try:
        # the emulators write their kubeconfig as the first cycle starts: signal it then
        deadline = time.monotonic() + TIMEOUT
        while not kubeconfig.exists():
            assert time.monotonic() < deadline and proc.proc.poll() is None, proc.output()
            time.sleep(0.01)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.finish() == 0, proc.output()
    finally:
        proc.proc.kill()
    out = proc.output()
    assert "finishing the current cycle" in out and "Traceback" not in out
    assert " cycle: 3 demos; committed " in out, out
    assert "cycle failed" not in out
    scratch = local_state_repo(repo)
    assert git(scratch, "status", "--porcelain") == ""  # nothing left half-written
    assert len(list(scratch.glob("status/*.yaml"))) == 3


def test_run_keeps_going_after_a_failed_cycle(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    proc = Process(["run", "--local", "--every", "1s", "--repo", str(repo), "--now", NOW_TEXT])
    try:
        proc.expect("out", " cycle: 3 demos; committed")
        good = (repo / "reconciler.yaml").read_bytes()
        commit_as(repo, when=NOW, files={"reconciler.yaml": "kind: nope\n"}, message="break")
        proc.expect("err", "cycle failed")
        commit_as(repo, when=NOW, files={"reconciler.yaml": good}, message="fix")
        proc.expect("out", " cycle: 3 demos;")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.finish() == 0, proc.output()
    finally:
        proc.proc.kill()
    assert "Traceback" not in proc.output()


def test_ctrl_c_during_reconcile_exits_130_with_one_line(tmp_path: Path) -> None:
    """1 means an action failed; an interrupted run is 130 (128 + SIGINT), as shells expect."""
    _, repo = state_repo(tmp_path)
    # projects that stay COMING_UP keep --wait cycling until the interrupt
    args = ["reconcile", "--local", "--wait", "600s", "--repo", str(repo), "--now", NOW_TEXT]
    proc = Process(args, env={"DEMOCTL_LOCAL_COME_UP_SECONDS": "3600"})
    try:
        proc.expect("out", "cycle 2 (")
        proc.proc.send_signal(signal.SIGINT)
        code = proc.finish()
    finally:
        proc.proc.kill()
    errors = [line for name, line in proc.seen if name == "err" and line.strip()]
    assert code == 130, proc.output()
    assert errors == ["democtl: interrupted"], proc.output()


def test_a_ctrl_c_lost_in_a_finalizer_is_still_recorded_and_not_printed(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """What made the test above flaky: under load the garbage collector ran GitPython's
    `Repo.__del__` as the SIGINT arrived, Python printed the KeyboardInterrupt raised in
    it ("Exception ignored in") and went on, and `--wait 600s` cycled on."""
    from reconciler.cli.cycle import _interrupt_recorded

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):  # the handler runs at a bytecode boundary in here
                pass

    with _interrupt_recorded() as interrupted:
        Finalized()  # collected at once: the interrupt lands in its __del__
        assert interrupted.is_set()
    assert "KeyboardInterrupt" not in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- production mode without credentials ----------------------------------------------


def test_production_mode_without_credentials_names_the_variable(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    for command in ("reconcile", "plan", "run"):
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", command, "--repo", str(repo)],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 2, (command, result.stderr)
        assert "SUPABASE_ACCESS_TOKEN" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_tokens_never_reach_the_output(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    tokens = {
        "SUPABASE_ACCESS_TOKEN": "sbp_fake0123456789abcdef",
        "CLOUDFLARE_API_TOKEN": "cf-fake-token-9876543210",
        "GITHUB_TOKEN": "ghp_fakeTOKEN0123456789",
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
    }
    everything = ""
    for args in (
        ["reconcile", "-vv"],
        ["plan", "-vv", "--format", "json"],
        ["status", "demo-acme01", "--live", "-vv"],
        ["reconcile", "--local", "-vv"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", *args, "--repo", str(repo), "--now", NOW_TEXT],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            env={**os.environ, "DEMOCTL_LOCAL_COME_UP_SECONDS": "0", **tokens},
            timeout=TIMEOUT,
            check=False,
        )
        assert "Traceback" not in result.stderr, (args, result.stderr)
        everything += result.stdout + result.stderr
    everything += git(local_state_repo(repo), "log", "-p", "--all")
    for name in SECRET_VARIABLES:
        assert tokens[name] not in everything, name
    files = b"".join(p.read_bytes() for p in local_state_dir(repo).rglob("*.yaml") if p.is_file())
    assert not any(tokens[name].encode() in files for name in SECRET_VARIABLES)


# --- faults in local mode (DEMOCTL_LOCAL_FAULTS) ------------------------------------------


def test_local_faults_from_the_environment_reach_the_emulators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Cloudflare token blocked by a 429 in local mode: no DNS this cycle, the rest goes on."""
    _, repo = state_repo(tmp_path)
    monkeypatch.setenv("DEMOCTL_LOCAL_FAULTS", "rate_limit=1, retry_after=300, only=/dns_records")
    code, out = democtl(repo, "reconcile", "--local")
    assert code == 0, out  # rate limited is left for a later cycle, not a failure
    assert "cloudflare rate limit on list records" in out
    assert "the dns listing failed this cycle" in out
    data = world(repo)
    assert data["cloudflare"]["records"] == []
    assert len(data["supabase"]["projects"]) == 3  # other providers were not faulted

    monkeypatch.delenv("DEMOCTL_LOCAL_FAULTS")  # faults live in the process, never in the state
    reconciled(repo)
    assert len(world(repo)["cloudflare"]["records"]) == 9


def test_wait_does_not_come_back_before_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cloudflare blocks a token for minutes after a 429: --wait must not hammer it meanwhile."""
    _, repo = state_repo(tmp_path)
    monkeypatch.setenv("DEMOCTL_LOCAL_FAULTS", "rate_limit=1, retry_after=300, only=/dns_records")
    started = time.monotonic()
    code, out = democtl(repo, "reconcile", "--local", "--wait", "60s")
    assert code == 0, out
    assert "cycle 2 " not in out, out  # one cycle, then it stopped rather than retry at once
    assert "rate limited for 300s, longer than --wait allows" in out
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("value", ["rate_limit=2", "bogus=1", "seed=x", "drop"])
def test_a_bad_local_faults_value_is_a_setup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    _, repo = state_repo(tmp_path)
    monkeypatch.setenv("DEMOCTL_LOCAL_FAULTS", value)
    code, out = democtl(repo, "reconcile", "--local")
    assert code == 2, out
    assert "DEMOCTL_LOCAL_FAULTS" in out and "Traceback" not in out


_LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR) (reconciler\.[\w.]+): (.*)$")
# Lines about the whole account or zone, not one demo: listings and the cycle summary.
_ACCOUNT_WIDE = re.compile(r"\blist \w+|\d+ managed records in |^cycle: |^observe: ")


def test_every_log_line_about_a_demo_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STYLE: the demo id on every line. Faults make the retry and error paths log too."""
    _, repo = state_repo(tmp_path)
    monkeypatch.setenv(
        "DEMOCTL_LOCAL_FAULTS", "rate_limit=0.05,server_error=0.08,drop=0.04,seed=11"
    )
    code, out = democtl(repo, "reconcile", "--local", "--wait", "60s", "-vv")
    lines = [m for m in map(_LOG_LINE.match, out.splitlines()) if m]
    assert len(lines) > 20, out  # -vv really logged the cycle
    demo_scoped = ("reconciler.apply", "reconciler.providers", "reconciler.database")
    anonymous = [
        m.group(0)
        for m in lines
        if m.group(2).startswith(demo_scoped)
        and not any(d in m.group(3) for d in DEMOS)
        and not _ACCOUNT_WIDE.search(m.group(3))
    ]
    assert anonymous == []
    assert code in (0, 1), out  # a faulted action may fail on the way; the demos converge
    assert all(row[0] == "ready" for row in table_rows(out).values()), out


def test_local_reset_starts_the_local_world_afresh(tmp_path: Path) -> None:
    _, repo = state_repo(tmp_path)
    reconciled(repo)
    before = {p["ref"] for p in world(repo)["supabase"]["projects"]}
    assert before
    code, out = democtl(repo, "local", "reset")
    assert code == 0 and "deleted" in out, out
    assert not (repo / ".democtl" / "local").exists()
    code, out = democtl(repo, "local", "reset")
    assert code == 0 and "nothing to reset" in out, out
    # a new world: nothing of the old one comes back
    fresh = world(repo)
    assert not fresh.get("supabase", {}).get("projects")
    assert not fresh.get("cloudflare", {}).get("records")
    assert not fresh["kubernetes"]["namespaces"]
