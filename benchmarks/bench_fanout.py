"""Benchmark: K new demos at once, from their demo files to all ready.

The local world (Supabase emulator on real PostgreSQL, Cloudflare and Kubernetes
emulators) with 100 ms of latency on every call and the documented rate limits
(Supabase: 120 a minute per user, scope and endpoint; Cloudflare: 1,200 per five
minutes per user), served by `democtl local serve` in a process of its own, as in
production the vendors' work runs on their machines and not in democtl's process
(`--same-process` runs the emulators inside the benchmark instead, as before).
Kubernetes: democtl's client-side QPS limit from the settings (`kubernetes.clientQps`
and `clientBurst`; `--kube-qps 5 --kube-burst 10` for client-go's defaults).
Cycles run back to back, as `democtl reconcile --wait` runs them (`run_cycles`).
Prints, per K: wall time to all ready, cycles, commits, 429s received, Supabase
requests per demo (the listing, one a cycle for all demos, apart), the seconds
democtl's Kubernetes calls waited for their QPS tokens, the CPU seconds of democtl,
of the emulators' process and of PostgreSQL, each cycle's seconds; then wall(K)/wall(1).

The Supabase emulator answers each create at once and makes the project's database in
the background (the project is COMING_UP until it exists). `--spares` gives it as many
blank databases as demos, made before the timed window (`local serve --spare-databases
K`), so a create claims one by renaming it; the refills that follow run in the window,
at the lowest CPU priority, and count in the PostgreSQL column. Without `--spares`
every `CREATE DATABASE` is paid in the window: that row shows what the emulated
databases cost on this machine, which the real Supabase pays on each project's own.

    python benchmarks/bench_fanout.py [--k 1 --k 10 --k 50] [--concurrency N] [--spares]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler import database  # noqa: E402
from reconciler.local import local_state_dir  # noqa: E402
from reconciler.local.postgres import discard_cluster  # noqa: E402
from reconciler.local.server import Faults  # noqa: E402
from reconciler.local.stack import LocalStack  # noqa: E402
from reconciler.local.world import find_world  # noqa: E402
from reconciler.loop import CycleOptions, CycleResult, Repeat, run_cycles  # noqa: E402
from reconciler.model import Phase, Settings  # noqa: E402
from reconciler.wiring import close_providers, local_providers  # noqa: E402
from tests.gitrepo import commit_as, demo_yaml, origin_and_clone, sample_settings  # noqa: E402

LATENCY = 0.1
COME_UP = 2.0
LISTING = "list projects"
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Counting:
    """A RequestObserver: every exchange democtl had, by provider and operation, and its 429s."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[tuple[str, str]] = Counter()
        self.refused: Counter[str] = Counter()

    def response(self, provider: str, operation: str, status: int) -> None:
        with self.lock:
            self.calls[(provider, operation)] += 1
            if status == 429:
                self.refused[provider] += 1

    def retried(self, provider: str, operation: str, status: int | None, pause: float) -> None:
        return


def settings_for(k: int, qps: float | None, burst: int | None) -> str:
    """The sample settings with room in the cluster for every demo (no queue)."""
    data = yaml.safe_load(sample_settings())
    data["capacity"].update(totalCpu="1024", totalMemory="4096Gi", maxConcurrentDemos=max(k, 20))
    if qps is not None:
        data["kubernetes"]["clientQps"] = qps
    if burst is not None:
        data["kubernetes"]["clientBurst"] = burst
    return yaml.safe_dump(data, sort_keys=False)


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """A process's CPU time from /proc (Linux); with `children`, its live children's and
    the reaped ones' too (PostgreSQL forks a backend per connection)."""

    def fields(of: int) -> list[str]:
        text = Path(f"/proc/{of}/stat").read_text()
        return text[text.rfind(")") + 2 :].split()

    try:
        own = fields(pid)
    except OSError:
        return 0.0
    ticks = sum(int(x) for x in own[11 : 15 if children else 13])
    if children:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    child = fields(int(entry.name))
                    if int(child[1]) == pid:
                        ticks += int(child[11]) + int(child[12])
    return ticks / TICK


def postmaster_pid(state_dir: Path) -> int | None:
    """The local PostgreSQL's server process: its data is beside the state, or (as root)
    in the temp directory that `postgres/location` records."""
    bases = [state_dir / "postgres"]
    with contextlib.suppress(OSError):
        bases.append(Path((state_dir / "postgres" / "location").read_text().strip()))
    for base in bases:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((base / "data" / "postmaster.pid").read_text().split()[0])
    return None


@contextlib.contextmanager
def served_world(repo: Path, spares: int = 0) -> Iterator[int]:
    """`democtl local serve --source repo` in a process of its own; yields its pid once it
    serves (its spare databases made, if any)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMOCTL_")}
    env.update(
        DEMOCTL_LOCAL_FAULTS=f"latency={LATENCY}", DEMOCTL_LOCAL_COME_UP_SECONDS=str(COME_UP)
    )
    command = [sys.executable, "-m", "reconciler", "-C", str(repo), "local", "serve"]
    child = subprocess.Popen(
        [*command, "--source", str(repo), "--spare-databases", str(spares)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        if not first.startswith("local world served"):
            raise SystemExit(f"democtl local serve did not start: {first!r}")
        yield child.pid
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)


def run(
    k: int,
    concurrency: int,
    limit: float,
    *,
    same_process: bool = False,
    qps: float | None = None,
    burst: int | None = None,
    spares: int = 0,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="democtl-bench-") as tmp:
        started_at = datetime.now(UTC).replace(microsecond=0)
        _, repo = origin_and_clone(
            Path(tmp), files={"reconciler.yaml": settings_for(k, qps, burst)}
        )
        demos = [f"demo-fan{n:03d}" for n in range(k)]
        commit_as(
            repo,
            when=started_at,
            files={f"demos/{d}.yaml": demo_yaml(d) for d in demos},
            message=f"{k} demos",
        )
        settings = Settings.model_validate(yaml.safe_load((repo / "reconciler.yaml").read_text()))
        counting = Counting()
        with contextlib.ExitStack() as stack:
            # last out: the cluster's data, which as root lives outside `tmp`
            stack.callback(lambda: discard_cluster(state_dir))
            state_dir = Path(tmp) / "world" if same_process else local_state_dir(repo)
            if same_process:
                world: Any = stack.enter_context(
                    LocalStack(
                        state_dir,
                        repo,
                        settings,
                        faults=Faults(latency=LATENCY),
                        come_up_seconds=COME_UP,
                        database_lag_seconds=0.5,
                        spare_databases=spares,
                    )
                )
                world.supabase.databases.wait_spares(timeout=600)
                emulators = os.getpid()
            else:
                emulators = stack.enter_context(served_world(repo, spares))
                world = find_world(state_dir, settings, {})
                if world is None:
                    raise SystemExit("the served world is not found")
            postgres = postmaster_pid(state_dir)
            providers = local_providers(world, counting)
            stack.callback(close_providers, providers)
            durations: list[float] = []
            commits = 0
            ticks: list[float] = []

            def on_start(number: int, now: datetime) -> None:
                ticks.append(time.monotonic())

            def on_end(number: int, result: CycleResult) -> None:
                nonlocal commits
                durations.append(time.monotonic() - ticks[-1])
                commits += result.commit is not None

            emulators_cpu0 = cpu_seconds(emulators)
            postgres_cpu0 = cpu_seconds(postgres, children=True) if postgres else 0.0
            cpu0 = time.process_time()
            began = time.monotonic()
            ran = run_cycles(
                repo,
                providers,
                datetime.now(UTC).replace(microsecond=0),
                # as `democtl reconcile` runs: it knows the migrations the package ships
                CycleOptions(
                    concurrency=concurrency,
                    known_migrations=tuple(m.version for m in database.load_migrations()),
                ),
                Repeat(wait=limit),
                on_cycle_start=on_start,
                on_cycle_end=on_end,
            )
            wall = time.monotonic() - began
            cpu = time.process_time() - cpu0
            emulators_cpu = cpu_seconds(emulators) - emulators_cpu0
            postgres_cpu = (
                cpu_seconds(postgres, children=True) if postgres else 0.0
            ) - postgres_cpu0
            statuses = ran.last.statuses
            if not all(statuses[d].phase is Phase.READY for d in demos):
                phases = Counter(statuses[d].phase.value for d in demos if d in statuses)
                raise SystemExit(f"K={k}: not ready after {ran.cycles} cycles ({dict(phases)})")
            supabase = Counter(
                {op: n for (provider, op), n in counting.calls.items() if provider == "supabase"}
            )
            limiter = getattr(providers.cluster, "limiter", None)
            return {
                "k": k,
                "wall": wall,
                "cycles": ran.cycles,
                "commits": commits,
                "429s": sum(counting.refused.values()),
                "supabase_per_demo": (sum(supabase.values()) - supabase[LISTING]) / k,
                "listings": supabase[LISTING],
                "k8s_wait": float(limiter.waited) if limiter is not None else 0.0,
                "cpu": cpu,  # with --same-process, the emulators' Python work too
                "emulators_cpu": emulators_cpu if not same_process else float("nan"),
                "postgres_cpu": postgres_cpu,
                "durations": "/".join(f"{d:.1f}" for d in durations),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, action="append", help="demos at once (repeatable)")
    parser.add_argument("--concurrency", type=int, default=CycleOptions().concurrency)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--kube-qps", type=float, default=None)
    parser.add_argument("--kube-burst", type=int, default=None)
    parser.add_argument("--same-process", action="store_true", help="emulators in this process")
    parser.add_argument(
        "--spares", action="store_true", help="K spare databases made before the timed window"
    )
    args = parser.parse_args()
    ks = args.k or [1, 10, 50]
    print(f"spare databases: {'K, made before the timed window' if args.spares else 'none'}")
    print(
        f"{'K':>4} {'wall s':>7} {'cycles':>6} {'commits':>7} {'429s':>5} "
        f"{'supabase/demo':>13} {'listings':>8} {'k8s QPS wait s':>14} "
        f"{'democtl CPU s':>13} {'emulators CPU s':>15} {'PostgreSQL CPU s':>16}  cycle seconds"
    )
    rows = []
    for k in ks:
        row = run(
            k,
            args.concurrency,
            args.max_seconds,
            same_process=args.same_process,
            qps=args.kube_qps,
            burst=args.kube_burst,
            spares=k if args.spares else 0,
        )
        rows.append(row)
        print(
            f"{row['k']:>4} {row['wall']:>7.1f} {row['cycles']:>6} {row['commits']:>7} "
            f"{row['429s']:>5} {row['supabase_per_demo']:>13.1f} {row['listings']:>8} "
            f"{row['k8s_wait']:>14.1f} {row['cpu']:>13.1f} {row['emulators_cpu']:>15.1f} "
            f"{row['postgres_cpu']:>16.1f}  {row['durations']}",
            flush=True,
        )
    one = next((r for r in rows if r["k"] == 1), None)
    if one is not None:
        for row in rows:
            if row["k"] != 1:
                print(f"wall({row['k']})/wall(1) = {row['wall'] / one['wall']:.2f}")


if __name__ == "__main__":
    main()
