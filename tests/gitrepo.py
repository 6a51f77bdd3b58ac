"""Real git repositories for tests: a bare origin and clones in a temporary folder.

Reusable by every test that needs a state repository. Commits are made with the
git command line, with fixed author/committer names and dates, so that history
(and therefore creation times) is deterministic.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from reconciler.model import Condition, DemoStatus, DnsRecordStatus, Phase, SupabaseStatus

PROJECT = Path(__file__).resolve().parent.parent
BASE_TIME = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
PERSON = ("Alice Example", "alice@splits.network")


def git(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, input_text: str | None = None
) -> str:
    """Run git and return its stdout; fail the test with stderr when it fails."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout


def _dates(when: datetime) -> dict[str, str]:
    stamp = f"@{int(when.timestamp())} +0000"
    return {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}


def write(root: Path, files: Mapping[str, bytes | str | None]) -> None:
    """Write (text or bytes) or delete (None) repository-relative files."""
    for rel, content in files.items():
        path = root / rel
        if content is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def commit_as(
    clone: Path,
    author: tuple[str, str] = PERSON,
    when: datetime = BASE_TIME,
    files: Mapping[str, bytes | str | None] | None = None,
    message: str = "change",
) -> str:
    """Write `files`, stage everything, commit as `author` at `when`; return the sha."""
    write(clone, files or {})
    git(clone, "add", "-A")
    name, email = author
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        **_dates(when),
    }
    git(clone, "commit", "--quiet", "--allow-empty", "-m", message, env=env)
    return git(clone, "rev-parse", "HEAD").strip()


def clone(origin: Path, dest: Path) -> Path:
    """Clone `origin` into `dest`, on main, with a local identity for stray commits."""
    git(dest.parent, "clone", "--quiet", "--branch", "main", str(origin), str(dest))
    git(dest, "config", "user.name", "Test Runner")
    git(dest, "config", "user.email", "runner@example.invalid")
    return dest


def origin_and_clone(
    tmp_path: Path,
    files: Mapping[str, bytes | str | None] | None = None,
    when: datetime = BASE_TIME,
    author: tuple[str, str] = PERSON,
) -> tuple[Path, Path]:
    """A bare origin with one commit holding `files` (default: the sample settings), and a clone.

    Returns (origin, clone). Further clones: `clone(origin, tmp_path / "other")`.
    """
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    seed = tmp_path / "seed"
    git(tmp_path, "init", "--quiet", "--initial-branch=main", str(seed))
    content = dict(files) if files is not None else {"reconciler.yaml": sample_settings()}
    commit_as(seed, author, when, content, message="initial state")
    git(seed, "push", "--quiet", str(origin), "main")
    return origin, clone(origin, tmp_path / "clone")


def sample_settings() -> bytes:
    return (PROJECT / "reconciler.yaml").read_bytes()


def demo_yaml(demo_id: str, ttl: str | None = "2h", owner: str = "alice@splits.network") -> str:
    lines = [
        "apiVersion: demos.splits.network/v1",
        "kind: Demo",
        "metadata:",
        f"  name: {demo_id}",
        "spec:",
        "  type: enterprise",
        "  profile: small",
        f"  owner: {owner}",
    ]
    if ttl is not None:
        lines.append(f"  ttl: {ttl}")
    return "\n".join(lines) + "\n"


def log_subjects(repo: Path, ref: str = "HEAD") -> list[str]:
    return git(repo, "log", "--format=%s", ref).splitlines()


STATUS_TIME = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def make_status(demo_id: str = "demo-acme01", phase: Phase = Phase.READY) -> DemoStatus:
    """A complete status (created at STATUS_TIME, 2h ttl) for tests that need one."""
    return DemoStatus(
        id=demo_id,
        namespace=demo_id,
        demoType="enterprise",
        profile="small",
        phase=phase,
        createdBy="alice@splits.network",
        createdAt=STATUS_TIME,
        expiresAt=datetime(2026, 11, 25, 11, 0, tzinfo=UTC),
        specHash="sha256:0123456789abcdef",
        urls={"portal": f"https://{demo_id}-portal.splits.network"},
        supabase=SupabaseStatus(projectRef="abcdefghijklmnopqrst", migrations=["0001_init"]),
        dns=[DnsRecordStatus(name=f"{demo_id}-portal.x", type="CNAME", content="lb.x")],
        conditions=[
            Condition(
                type="Ready", status="True", reason="AllHealthy", lastTransitionTime=STATUS_TIME
            )
        ],
    )
