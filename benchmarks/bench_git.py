"""`democtl history` and `democtl list` on long state histories, built with `git fast-import`.

Run from the repository root: `python benchmarks/bench_git.py [--commits 1000 10000 50000]`.

Each history is a state repository as years of use leave it: per demo, a person's
commit adding `demos/<id>.yaml`, one extending it (a ttl raised, so `history`
reads the spec before and after), democtl's `creating` and `ready` commits
(status file, `Demo-Id`/`Demo-Action` trailers, as `commit.commit_message`
writes them), the person's delete and democtl's `removed`: six commits a
lifetime. The last 50 demos are still running at the head. Both commands run
as whole processes (`python -m reconciler`), wall time measured around them.
Also one demo's lifetime on a real git repository with the in-memory providers
(added, created with a project that takes a cycle to come up and a namespace
that takes another, ready, a no-op cycle, expired and removed): democtl's
commits and the bytes of the git objects they added, in all and for the no-op
cycle alone. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIVE = 50
PER_LIFETIME = 6
T0 = 1_764_000_000


def demo_text(demo_id: str, ttl: str) -> bytes:
    return (
        "apiVersion: demos.splits.network/v1\nkind: Demo\n"
        f"metadata:\n  name: {demo_id}\nspec:\n  type: enterprise\n  profile: small\n"
        f"  owner: alice@splits.network\n  ttl: {ttl}\n"
    ).encode()


def status_text(demo_id: str, phase: str) -> bytes:
    return f"# written by democtl\nschemaVersion: 1\nid: {demo_id}\nphase: {phase}\n".encode()


def fast_import_stream(commits: int) -> bytes:
    out: list[bytes] = []
    clock = T0
    count = 0

    def commit(who: str, message: str, changes: list[tuple[str, bytes | None]]) -> None:
        nonlocal clock, count
        clock += 60
        count += 1
        name, email = ("democtl", "democtl@localhost") if who == "bot" else ("Alice", "alice@x")
        msg = message.encode()
        out.append(b"commit refs/heads/main\n")
        out.append(f"committer {name} <{email}> {clock} +0000\n".encode())
        out.append(f"data {len(msg)}\n".encode() + msg + b"\n")
        for path, content in changes:
            if content is None:
                out.append(f"D {path}\n".encode())
            else:
                out.append(f"M 100644 inline {path}\ndata {len(content)}\n".encode())
                out.append(content + b"\n")

    def bot(demo_id: str, action: str, content: bytes | None) -> str:
        path = f"status/{demo_id}.yaml"
        commit(
            "bot",
            f"{demo_id}: {action}\n\n- {demo_id}: {action}\n\n"
            f"Demo-Id: {demo_id}\nDemo-Action: {action}\n",
            [(path, content)],
        )
        return path

    settings = (ROOT / "reconciler.yaml").read_bytes()
    commit("person", "initial state\n", [("reconciler.yaml", settings)])
    lifetimes = max(1, (commits - 1) // PER_LIFETIME)
    for n in range(lifetimes):
        demo_id = f"demo-h{n:06d}"
        path = f"demos/{demo_id}.yaml"
        commit("person", f"add {demo_id}\n", [(path, demo_text(demo_id, "2h"))])
        bot(demo_id, "creating", status_text(demo_id, "creating"))
        commit("person", f"extend {demo_id}\n", [(path, demo_text(demo_id, "4h"))])
        bot(demo_id, "ready", status_text(demo_id, "ready"))
        if n < lifetimes - LIVE:
            commit("person", f"delete {demo_id}\n", [(path, None)])
            bot(demo_id, "removed", None)
    while count < commits:  # pad to the exact count with settings touches
        commit("person", "touch settings\n", [("reconciler.yaml", settings + b"\n" * count)])
    return b"".join(out)


def build(folder: Path, commits: int) -> Path:
    repo = folder / f"state-{commits}"
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(repo)], check=True)
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=repo, input=fast_import_stream(commits), check=True
    )
    subprocess.run(["git", "checkout", "--quiet", "main"], cwd=repo, check=True)
    return repo


def timed(*args: str) -> tuple[float, float, bytes]:
    """Wall time, and CPU of democtl with the git it ran (user + system), and stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr.decode())
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stdout


def new_bytes(repo: Path, since: str) -> int:
    """The bytes of every object reachable from HEAD and not from `since`."""
    objects = subprocess.run(
        ["git", "rev-list", "--objects", f"{since}..HEAD"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = "\n".join(line.split()[0] for line in objects.splitlines() if line.strip())
    sizes = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objectsize)"],
        cwd=repo,
        input=names + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(size) for size in sizes.split() if size.isdigit())


def lifetime() -> dict[str, int]:
    sys.path.insert(0, str(ROOT))
    from datetime import timedelta

    from reconciler.loop import CycleOptions, run_cycle
    from tests.fakes import World
    from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, origin_and_clone

    with tempfile.TemporaryDirectory(prefix="democtl-bench-life-") as tmp:
        _, repo = origin_and_clone(Path(tmp))
        commit_as(
            repo, when=BASE_TIME, files={"demos/demo-life01.yaml": demo_yaml("demo-life01", "1h")}
        )
        start = git(repo, "rev-parse", "HEAD").strip()
        world = World()
        world.supabase.comes_up_healthy = False
        now, noop = BASE_TIME + timedelta(minutes=1), {"commits": 0, "bytes": 0}
        for number in range(10):
            before = git(repo, "rev-parse", "HEAD").strip()
            result = run_cycle(repo, world.providers(), now, CycleOptions())
            if number == 4:  # ready since a cycle or two: this one must change nothing
                noop = {"commits": int(result.commit is not None), "bytes": new_bytes(repo, before)}
            if number == 1:
                world.supabase.bring_up()
            if number == 2:
                world.cluster.sync("demo-life01")
            now += timedelta(minutes=10 if number < 5 else 30)
        commits = git(repo, "rev-list", "--count", "--author=democtl", f"{start}..HEAD")
        return {
            "lifetime_commits": int(commits),
            "lifetime_bytes": new_bytes(repo, start),
            "noop_cycle_commits": noop["commits"],
            "noop_cycle_bytes": noop["bytes"],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, nargs="+", default=[1000, 10000, 50000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="democtl-bench-git-") as tmp:
        for commits in args.commits:
            repo = build(Path(tmp), commits)
            history, history_cpu, out = timed("history", "--repo", str(repo), "--format", "json")
            listed, listed_cpu, _ = timed("list", "--repo", str(repo))
            rows.append(
                {
                    "commits": commits,
                    "history_seconds": round(history, 2),
                    "history_cpu_seconds": round(history_cpu, 2),
                    "history_events": len(json.loads(out)),
                    "list_seconds": round(listed, 2),
                    "list_cpu_seconds": round(listed_cpu, 2),
                }
            )
    print(json.dumps({"git_histories": rows, "git_lifetime": lifetime()}))


if __name__ == "__main__":
    main()
