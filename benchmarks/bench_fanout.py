"""Benchmark: K new demos at once, from their demo files to all ready.

The local stack (Supabase emulator on real PostgreSQL, Cloudflare and Kubernetes
emulators) with 100 ms of latency on every call and the documented rate limits
(Supabase: 120 a minute per user, scope and endpoint; Cloudflare: 1,200 per five
minutes per user; Kubernetes: client-go's 5 QPS, burst 10, on democtl's side).
Cycles run back to back, as `democtl reconcile --wait` runs them (a pause of
IDLE_PAUSE after a cycle that changed nothing). Prints, per K: wall time to all
ready, cycles, commits, 429s received, Supabase requests per demo (the listing,
one a cycle for all demos, apart), then wall(K)/wall(1).

    python benchmarks/bench_fanout.py [--k 1 --k 10 --k 50] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.local.server import Faults
from reconciler.local.stack import LocalStack
from reconciler.loop import IDLE_PAUSE, CycleOptions, run_cycle
from reconciler.model import Phase, Settings
from reconciler.wiring import close_providers, local_providers
from tests.gitrepo import commit_as, demo_yaml, origin_and_clone, sample_settings

LATENCY = 0.1
LISTING = "GET /v1/projects"


def settings_for(k: int) -> str:
    """The sample settings with room in the cluster for every demo (no queue)."""
    data = yaml.safe_load(sample_settings())
    data["capacity"].update(totalCpu="1024", totalMemory="4096Gi", maxConcurrentDemos=max(k, 20))
    return yaml.safe_dump(data, sort_keys=False)


def run(k: int, concurrency: int, limit: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="democtl-bench-") as tmp:
        started_at = datetime.now(UTC).replace(microsecond=0)
        _, repo = origin_and_clone(Path(tmp), files={"reconciler.yaml": settings_for(k)})
        demos = [f"demo-fan{n:03d}" for n in range(k)]
        commit_as(
            repo,
            when=started_at,
            files={f"demos/{d}.yaml": demo_yaml(d) for d in demos},
            message=f"{k} demos",
        )
        settings = Settings.model_validate(yaml.safe_load((repo / "reconciler.yaml").read_text()))
        stack = LocalStack(
            Path(tmp) / "world",
            repo,
            settings,
            faults=Faults(latency=LATENCY),
            come_up_seconds=2.0,
            database_lag_seconds=0.5,
        )
        with stack:
            providers = local_providers(stack)
            options = CycleOptions(concurrency=concurrency)
            cycles = commits = 0
            durations: list[float] = []
            previous: datetime | None = None
            began = time.monotonic()
            try:
                while True:
                    now = datetime.now(UTC).replace(microsecond=0)
                    tick = time.monotonic()
                    result = run_cycle(repo, providers, now, options, health_since=previous)
                    durations.append(time.monotonic() - tick)
                    previous = now
                    cycles += 1
                    commits += result.commit is not None
                    if all(result.statuses[d].phase is Phase.READY for d in demos):
                        break
                    failed = [d for d in demos if result.statuses[d].phase is Phase.FAILED]
                    if failed or cycles >= limit:
                        raise SystemExit(f"K={k}: not ready after {cycles} cycles ({failed})")
                    if result.commit is None:
                        time.sleep(IDLE_PAUSE)
                wall = time.monotonic() - began
            finally:
                close_providers(providers)
            assert stack.supabase is not None and stack.cloudflare is not None
            supabase = Counter(stack.supabase.requests)
            refused = (
                stack.supabase.refused
                + stack.cloudflare.refused
                + sum(stack.supabase.server.faults_injected.values())
                + sum(stack.cloudflare.server.faults_injected.values())
            )
            per_demo = (sum(supabase.values()) - supabase[LISTING]) / k
            return {
                "k": k,
                "wall": wall,
                "cycles": cycles,
                "commits": commits,
                "429s": refused,
                "supabase_per_demo": per_demo,
                "listings": supabase[LISTING],
                "k8s_wait": stack_wait(providers),
                "durations": "/".join(f"{d:.1f}" for d in durations),
            }


def stack_wait(providers: object) -> float:
    """Seconds democtl's Kubernetes calls waited for the client-side QPS limit."""
    limiter = getattr(getattr(providers, "cluster", None), "limiter", None)
    return float(limiter.waited) if limiter is not None else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, action="append", help="demos at once (repeatable)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-cycles", type=int, default=40)
    args = parser.parse_args()
    ks = args.k or [1, 10, 50]
    print(
        f"{'K':>4} {'wall s':>8} {'cycles':>7} {'commits':>8} {'429s':>5} "
        f"{'supabase/demo':>14} {'listings':>9} {'k8s QPS wait s':>15}  cycle seconds"
    )
    rows = []
    for k in ks:
        row = run(k, args.concurrency, args.max_cycles)
        rows.append(row)
        print(
            f"{row['k']:>4} {row['wall']:>8.1f} {row['cycles']:>7} {row['commits']:>8} "
            f"{row['429s']:>5} {row['supabase_per_demo']:>14.1f} {row['listings']:>9} "
            f"{row['k8s_wait']:>15.1f}  {row['durations']}",
            flush=True,
        )
    one = next((r for r in rows if r["k"] == 1), None)
    if one is not None:
        for row in rows:
            if row["k"] != 1:
                print(f"wall({row['k']})/wall(1) = {row['wall'] / one['wall']:.2f}")


if __name__ == "__main__":
    main()
