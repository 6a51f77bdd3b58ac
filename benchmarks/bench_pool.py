"""Time to ready with and without the warm pool, under emulated real latencies.

Run from the repository root: `python benchmarks/bench_pool.py [--interval 15]`.
One local world per run (Supabase emulator on real PostgreSQL, the Kubernetes and
Cloudflare emulators, a real git repository), on an emulated clock: a project comes
up in 90 s (the real service takes one to two minutes) and every Supabase API call is
charged 100 ms; cycles run every `--interval` emulated seconds. The clock is stepped,
not slept on, so the minutes a cold start takes run in seconds: the compression factor
is printed. Prints, per step (project, migrations, seed, keys, Secret, release, DNS,
health), the emulated seconds from the demo file landing on main to the cycle that
did it, with and without the pool, and the ratio of the times to ready.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from reconciler import database  # noqa: E402
from reconciler.local.stack import LocalStack  # noqa: E402
from reconciler.loop import CycleOptions, run_cycle  # noqa: E402
from reconciler.model import Phase, Settings  # noqa: E402
from reconciler.plan import ActionKind  # noqa: E402
from reconciler.wiring import close_providers, local_providers  # noqa: E402
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, origin_and_clone  # noqa: E402

DEMO = "demo-bench01"
COME_UP = 90.0
PER_CALL = 0.1
STEPS = {
    "project": (ActionKind.CLAIM_PROJECT, ActionKind.WAIT_PROJECT),
    "migrations": (ActionKind.MIGRATE,),
    "seed": (ActionKind.SEED,),
    "keys": (ActionKind.FETCH_KEYS,),
    "secret": (ActionKind.WRITE_SECRET,),
    "release": (ActionKind.RENDER_RELEASE,),
    "dns": (ActionKind.ENSURE_DNS,),
}


class Moment:
    def __init__(self) -> None:
        self.now = BASE_TIME + timedelta(minutes=1)

    def __call__(self) -> float:
        return self.now.timestamp()


def one_run(pool: int, interval: float, tmp: Path) -> tuple[dict[str, float], float, float]:
    """(step -> emulated seconds after landing, emulated time to ready, real seconds)."""
    _, repo = origin_and_clone(tmp)
    data = yaml.safe_load((repo / "reconciler.yaml").read_text())
    if pool:
        data["supabase"]["warmPool"] = {"size": pool, "maxAgeHours": 24}
    commit_as(repo, files={"reconciler.yaml": yaml.safe_dump(data, sort_keys=False)})
    settings = Settings.model_validate(data)
    moment = Moment()
    known = tuple(m.version for m in database.load_migrations())
    options = CycleOptions(known_migrations=known)
    stack = LocalStack(tmp / "world", repo, settings, come_up_seconds=COME_UP, clock=moment)
    real = 0.0
    with stack:
        assert stack.supabase is not None
        providers = local_providers(stack)
        try:

            def cycle() -> tuple[object, float]:
                nonlocal real
                before = sum(stack.supabase.requests.values())  # type: ignore[union-attr]
                start = time.perf_counter()
                result = run_cycle(repo, providers, moment.now, options)
                took = time.perf_counter() - start
                real += took
                calls = sum(stack.supabase.requests.values()) - before  # type: ignore[union-attr]
                # the emulated seconds the caller skips next are time the databases the
                # emulator makes in the background had (not counted in `real`)
                stack.supabase.settle()  # type: ignore[union-attr]
                return result, calls * PER_CALL

            if pool:  # the pool fills before the demo lands, as it would in steady state
                for _ in range(int(3 * COME_UP / interval) + 2):
                    cycle()
                    moment.now += timedelta(seconds=interval)
            commit_as(repo, when=moment.now, files={f"demos/{DEMO}.yaml": demo_yaml(DEMO)})
            landed = moment.now
            steps: dict[str, float] = {}
            for _ in range(60):
                result, charged = cycle()
                # a cycle's calls delay what it does by their latency
                at = (moment.now - landed).total_seconds() + charged
                outcome = next((o for o in result.outcomes if o.demo_id == DEMO), None)  # type: ignore[attr-defined]
                for step, kinds in STEPS.items():
                    if outcome and step not in steps and any(k in outcome.done for k in kinds):
                        steps[step] = at
                # healthy without a WAIT of its own: the first cycle that tries to migrate
                if (
                    outcome
                    and "project" not in steps
                    and outcome.failed_action in STEPS["migrations"]
                ):
                    steps["project"] = at
                if "migrations" in steps and "project" not in steps:
                    steps["project"] = steps["migrations"]
                if result.statuses[DEMO].phase is Phase.READY:  # type: ignore[attr-defined]
                    steps["health"] = at
                    return steps, at, real
                moment.now += timedelta(seconds=interval)
            raise SystemExit(f"{DEMO} never became ready: {result.statuses[DEMO]}")  # type: ignore[attr-defined]
        finally:
            close_providers(providers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=15.0, help="emulated s between cycles")
    parser.add_argument("--pool", type=int, default=1, help="warm pool size")
    args = parser.parse_args()
    runs = {}
    for label, size in (("cold", 0), ("pool", args.pool)):
        with tempfile.TemporaryDirectory(prefix="democtl-bench-pool-") as tmp:
            runs[label] = one_run(size, args.interval, Path(tmp))
    (cold, cold_ready, cold_real), (warm, warm_ready, warm_real) = runs["cold"], runs["pool"]
    print(
        f"emulated: project come-up {COME_UP:.0f} s, {PER_CALL * 1000:.0f} ms per Supabase call, "
        f"a cycle every {args.interval:g} s"
    )
    print(f"{'step':<12}{'cold (s)':>10}{'pool (s)':>10}")
    for step in (*STEPS, "health"):
        c, w = cold.get(step), warm.get(step)
        cells = ["-" if v is None else f"{v:.1f}" for v in (c, w)]
        print(f"{step:<12}{cells[0]:>10}{cells[1]:>10}")
    print(
        f"time to ready: cold {cold_ready:.1f} s, pool {warm_ready:.1f} s, "
        f"ratio {cold_ready / warm_ready:.1f}x"
    )
    print(
        f"compression: cold {cold_ready:.0f} emulated s in {cold_real:.1f} real s "
        f"({cold_ready / cold_real:.0f}x); the pool run's {warm_real:.1f} real s include filling it"
    )


if __name__ == "__main__":
    main()
