"""A no-op reconcile cycle over N ready demos: democtl's own CPU, wall and peak memory.

Run from the repository root: `python benchmarks/steady_state.py --demos 1000 [--profile]`.

The world: a real git state repository (N demo files, then the cycles' own
commits) and the in-memory providers of tests/fakes.py, which answer from
dicts, so what is measured is democtl's own work (load, observe, plan, apply,
render, write) and not a provider's. One PostgreSQL database per demo would make
10,000 impractical (about 80 MB and a second of start-up each), and the
emulators' cost is theirs, not democtl's; the fakes stand in with the same
answers (projects listed ACTIVE_HEALTHY, namespaces synced, records kept).

Steps: commit N demo files; run cycles until every demo is ready (the set-up,
timed apart); then time one more cycle, which must commit nothing (*steady*).
*cold* is the same cycle in a fresh process on a fresh clone, as one
`democtl reconcile` per CI run: the providers' state is handed over in a pickle,
and the child times its cycle and, apart, its whole life minus unpickling the
fakes (interpreter start, imports, the cycle). With --profile (steady) or
--profile-cold, print the cProfile of that cycle (the top 25 by cumulative time)
on stderr. Prints one JSON line with the figures (run_all.py reads it).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pickle
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.loop import CycleOptions, run_cycle  # noqa: E402
from reconciler.model import Phase  # noqa: E402
from reconciler.providers.base import DesiredRecord, DnsRecord, Project, ProviderError  # noqa: E402
from tests.fakes import COMMENT, FakeDns, FakeSupabase, World  # noqa: E402

START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
RUN_EVERY = timedelta(minutes=5)  # `democtl run`'s default --every


class IndexedSupabase(FakeSupabase):
    """FakeSupabase that checks a taken name in a set: the stock one scans all projects."""

    def create_project(self, demo_id: str, db_pass: str) -> Project:
        with self.lock:
            taken = getattr(self, "_names", None)
            if taken is None:
                taken = self._names = set()  # type: ignore[attr-defined]
            name = self.project_name(demo_id)
            if name in taken:
                raise ProviderError("supabase", "create project", "already exists", demo_id=demo_id)
            taken.add(name)
            self.counter += 1
            ref = f"ref{self.counter:06d}"
        self.record("create_project", demo_id, demo_id)
        project = Project(ref, name, "ACTIVE_HEALTHY", demo_id, "us-east-1", self.created_at)
        self.projects[ref] = project
        self.passwords[ref] = db_pass
        return project


class IndexedDns(FakeDns):
    """FakeDns with its records indexed by name: the stock one scans all (N² to set up)."""

    def ensure_records(self, demo_id: str, desired: list[DesiredRecord]) -> list[DnsRecord]:
        self.record("ensure_records", demo_id, demo_id, tuple(desired))
        by_name = getattr(self, "_by_name", None)
        if by_name is None:
            by_name = self._by_name = {}  # type: ignore[attr-defined]
        result = []
        for want in desired:
            existing = by_name.get(want.name)
            with self.lock:
                self.counter += 1
                record_id = existing.id if existing else f"rec{self.counter:06d}"
            record = DnsRecord(
                record_id,
                want.name,
                want.type,
                want.content,
                want.proxied,
                1,
                COMMENT.format(demo_id),
                demo_id,
            )
            self.records[record_id] = record
            by_name[want.name] = record
            result.append(record)
        return result


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@splits.network",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@splits.network",
        "GIT_AUTHOR_DATE": f"@{int(START.timestamp())} +0000",
        "GIT_COMMITTER_DATE": f"@{int(START.timestamp())} +0000",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def settings_for(count: int) -> str:
    text = (ROOT / "reconciler.yaml").read_text()
    text = text.replace('totalCpu: "64"', f'totalCpu: "{count * 4 + 64}"')
    text = text.replace("totalMemory: 256Gi", f"totalMemory: {count * 8 + 256}Gi")
    return text.replace("maxConcurrentDemos: 20", f"maxConcurrentDemos: {count}")


def demo_file(i: int) -> str:
    types = ("enterprise", "startup", "recruiting-agency")
    return (
        "apiVersion: demos.splits.network/v1\nkind: Demo\n"
        f"metadata:\n  name: demo-b{i:05d}\n  labels: {{team: t{i % 7}}}\n"
        f"spec:\n  type: {types[i % 3]}\n  profile: small\n"
        f"  owner: user{i}@splits.network\n  ttl: 8h\n"
        f"  branding:\n    companyName: Company {i}\n    primaryColor: '#0055ff'\n"
    )


def state_repo(folder: Path, count: int) -> Path:
    repo = folder / "state"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "reconciler.yaml").write_text(settings_for(count))
    (repo / "demos").mkdir()
    for i in range(count):
        (repo / "demos" / f"demo-b{i:05d}.yaml").write_text(demo_file(i))
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", f"{count} demos")
    return repo


def bring_up(repo: Path, world: World, now: datetime) -> tuple[datetime, int]:
    """Cycles until every demo is ready; returns the clock after them and how many ran."""
    options = CycleOptions(concurrency=8, known_migrations=world.database.names)
    for number in range(1, 8):
        result = run_cycle(repo, world.providers(), now, options)  # type: ignore[no-untyped-call]
        for demo_id in result.statuses:
            if demo_id not in world.cluster.namespaces:
                world.cluster.sync(demo_id)
        world.supabase.bring_up()
        now += timedelta(seconds=30)
        if result.statuses and all(s.phase is Phase.READY for s in result.statuses.values()):
            return now, number
    raise SystemExit("the demos did not all become ready in 7 cycles")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demos", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-cold", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the fresh process's folder
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), datetime.fromisoformat(args.now), profile=args.profile_cold)
        return
    with tempfile.TemporaryDirectory(prefix="democtl-bench-") as tmp:
        repo = state_repo(Path(tmp), args.demos)
        world = World(supabase=IndexedSupabase(), dns=IndexedDns())
        started = time.perf_counter()
        now, cycles = bring_up(repo, world, START + timedelta(minutes=1))
        setup = time.perf_counter() - started
        options = CycleOptions(concurrency=8, known_migrations=world.database.names)
        run_cycle(repo, world.providers(), now, options)  # type: ignore[no-untyped-call]
        figures = {"demos": args.demos, "setup_cycles": cycles, "setup_seconds": round(setup, 1)}
        # steady: the process has seen these files before, as every cycle of `democtl run`
        figures["steady"] = measure(repo, world, now, options, profile=args.profile)
        # run: the next cycle of `democtl run --every 5m`, which knows when the previous one
        # ran, so the routine checks of healthy demos come in turns (plan.provision.in_turn)
        figures["run"] = measure(repo, world, now + RUN_EVERY, options, profile=False, since=now)
        figures["cold"] = fresh_process(Path(tmp), repo, world, now, profile=args.profile_cold)
        print(json.dumps(figures))


def fresh_process(
    folder: Path, repo: Path, world: World, now: datetime, *, profile: bool
) -> dict[str, object]:
    """The no-op cycle in a new process on a new clone: nothing this process learnt is there."""
    git(folder, "clone", "--quiet", str(repo), "fresh")
    world.forget_calls()
    for recorder in world.recorders():
        recorder.lock = None  # type: ignore[assignment]  # a lock does not pickle
    try:
        (folder / "world.pickle").write_bytes(pickle.dumps(world))
    finally:
        for recorder in world.recorders():
            recorder.lock = threading.Lock()
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder)]
    command += ["--now", now.isoformat()] + (["--profile-cold"] if profile else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the fresh process failed:\n{done.stderr[-4000:]}")
    if profile:
        sys.stderr.write(done.stderr)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child(folder: Path, now: datetime, *, profile: bool) -> None:
    loading = time.process_time()
    world = pickle.loads((folder / "world.pickle").read_bytes())  # the parent wrote it
    for recorder in world.recorders():
        recorder.lock = threading.Lock()
    loading = time.process_time() - loading
    options = CycleOptions(concurrency=8, known_migrations=world.database.names)
    figures = measure(folder / "fresh", world, now, options, profile=profile)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # the whole process as `democtl reconcile` would spend it, less unpickling the fakes
    figures["process_cpu_seconds"] = round(usage.ru_utime + usage.ru_stime - loading, 2)
    print(json.dumps(figures))


def peak_mb() -> int:
    """This process's high-water mark of resident memory.

    VmHWM belongs to the address space, which exec replaces: the fresh process's own
    figure. ru_maxrss is kept across exec on Linux, so a child would report its
    parent's peak when that is higher (getrusage(2)).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure(
    repo: Path,
    world: World,
    now: datetime,
    options: CycleOptions,
    *,
    profile: bool,
    since: datetime | None = None,
) -> dict[str, object]:
    """One no-op cycle: its CPU, wall, peak memory and provider calls; it must commit nothing."""
    world.forget_calls()
    profiler = cProfile.Profile() if profile else None
    head = git(repo, "rev-parse", "HEAD")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    result = run_cycle(repo, world.providers(), now, options, health_since=since)  # type: ignore[no-untyped-call]
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert result.commit is None, "a no-op cycle committed"
    assert git(repo, "rev-parse", "HEAD") == head
    calls = {
        name: len(recorder.calls)
        for name, recorder in (
            ("supabase", world.supabase),
            ("cloudflare", world.dns),
            ("kubernetes", world.cluster),
            ("http probes", world.prober),
        )
    }
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return {
        "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 2),
        "peak_mb": peak_mb(),
        "requests": calls,
    }


if __name__ == "__main__":
    main()
